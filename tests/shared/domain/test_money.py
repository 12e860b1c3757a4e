"""Minor units come from ISO 4217 list one (shipped in the repo), not from CLDR."""

from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources

import pytest
from pydantic import ValidationError

from services.enrichment.models import PartnerNotification
from shared.domain.money import (
    ISO_4217_MINOR_UNITS,
    MoneyError,
    format_plain,
    is_known_currency,
    minor_units,
    parse_amount,
)

BASE = json.loads(resources.files("shared.contracts").joinpath(
    "examples/settled-usd-ach.json").read_text())

# ISO 4217 says 2; CLDR's cash digits (what Babel reports) say 0.
CLDR_DISAGREES = ["ALL", "AFN", "IRR", "KPW", "LAK", "LBP", "MGA", "MMK", "RSD", "SOS",
                  "SYP", "YER"]


def _message(amount: str, currency: str) -> PartnerNotification:
    return PartnerNotification.model_validate({**BASE, "amount": amount, "currency": currency})


def test_the_table_is_list_one() -> None:
    assert len(ISO_4217_MINOR_UNITS) > 150
    assert ISO_4217_MINOR_UNITS["JPY"] == 0 and ISO_4217_MINOR_UNITS["KWD"] == 3
    assert ISO_4217_MINOR_UNITS["CLF"] == 4 and ISO_4217_MINOR_UNITS["EUR"] == 2
    for code in ("XAU", "XDR", "XTS", "XXX", "SLL"):
        assert not is_known_currency(code), f"{code} is not an active settlement currency"


@pytest.mark.parametrize("code", CLDR_DISAGREES)
def test_iso_not_cldr_minor_units(code: str) -> None:
    assert minor_units(code) == 2
    assert _message("1500.00", code).currency == code
    assert format_plain(Decimal("1500"), code) == "1500.00"


@pytest.mark.parametrize("code", sorted(ISO_4217_MINOR_UNITS))
def test_every_active_code_takes_exactly_its_minor_units(code: str) -> None:
    units = ISO_4217_MINOR_UNITS[code]
    assert parse_amount("1500" + ("." + "5" * units if units else ""), code)
    with pytest.raises(MoneyError):
        parse_amount("1500." + "5" * (units + 1), code)
    # The partner contract caps amounts at 3 fraction digits (CLF and UYW have 4).
    shown = min(units, 3)
    exact = "1500" + ("." + "5" * shown if shown else "")
    assert _message(exact, code).amount == Decimal(exact)
    if units < 3:
        with pytest.raises(ValidationError):
            _message("1500." + "5" * (units + 1), code)


def test_unknown_codes_are_refused() -> None:
    with pytest.raises(MoneyError):
        minor_units("ABC")
    with pytest.raises(ValidationError):
        _message("10.00", "XAU")
