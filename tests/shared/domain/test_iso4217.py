"""The shipped ISO 4217 table is at least as new as every amendment the project knows of.

``shared/domain/iso4217-amendments.csv`` lists announced changes (effective date,
added or withdrawn code); the table (``iso4217.csv``) must be published on or after
the newest one, hold every added code and none of the withdrawn ones.
"""

from __future__ import annotations

import csv
import re
from importlib import resources

import pytest

from shared.domain.money import (
    ISO_4217_MINOR_UNITS,
    ISO_4217_PUBLISHED,
    is_known_currency,
    parse_amount,
)

DOMAIN = resources.files("shared.domain")


def table_text() -> str:
    return DOMAIN.joinpath("iso4217.csv").read_text("utf-8")


def amendments() -> list[dict[str, str]]:
    text = DOMAIN.joinpath("iso4217-amendments.csv").read_text("utf-8")
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


def published() -> str:
    found = re.search(r"published:? (\d{4}-\d{2}-\d{2})", table_text())
    assert found, "the table's header must record its publication date"
    return found.group(1)


def test_the_table_records_its_date_and_source() -> None:
    header = [line for line in table_text().splitlines() if line.startswith("#")]
    assert any(line.startswith(f"# published: {published()}") for line in header), header
    assert any(line.startswith("# source: ") and len(line) > 20 for line in header), header
    assert published() == ISO_4217_PUBLISHED  # what the product reads


def test_the_table_is_not_older_than_the_newest_amendment() -> None:
    newest = max(a["effective"] for a in amendments())
    assert published() >= newest, (f"iso4217.csv is published {published()}, older than the "
                                   f"amendment effective {newest}: refresh it "
                                   "(python -m tools.iso4217 list-one.xml SOURCE)")


@pytest.mark.parametrize("amendment", amendments(), ids=lambda a: f"{a['change']}-{a['code']}")
def test_every_amendment_is_in_the_table(amendment: dict[str, str]) -> None:
    code = amendment["code"]
    if amendment["change"] == "added":
        assert code in ISO_4217_MINOR_UNITS, f"{code} ({amendment['note']}) is missing"
    else:
        assert amendment["change"] == "withdrawn"
        assert code not in ISO_4217_MINOR_UNITS, f"{code} was withdrawn {amendment['effective']}"


def test_caribbean_guilder_remittances_are_accepted() -> None:
    assert is_known_currency("XCG")
    assert str(parse_amount("1250.50", "XCG")) == "1250.50"
