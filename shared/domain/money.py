"""Currencies and amounts: money is ``Decimal``, never ``float``.

Known currencies and their minor units come from ISO 4217 list one, shipped as
``shared/domain/iso4217.csv`` (its header records the publication date and the
source; refresh it with ``python -m tools.iso4217 list-one.xml SOURCE``, and record
amendments in ``iso4217-amendments.csv``). CLDR (Babel) is for display only:
its "digits" are cash/display precision and differ from ISO for about a dozen
currencies (RSD, IRR, LBP, … have 2 minor units in ISO 4217, 0 in CLDR), which
would send valid ``1500.00 RSD`` confirmations to the DLQ.
"""

from __future__ import annotations

import csv
from decimal import Decimal, InvalidOperation
from importlib import resources
from types import MappingProxyType


def _load_iso4217() -> tuple[MappingProxyType[str, int], str]:
    text = resources.files("shared.domain").joinpath("iso4217.csv").read_text("utf-8")
    published = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                      if line.startswith("# published:")), "")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return MappingProxyType({row["code"]: int(row["minor_units"]) for row in rows}), published


ISO_4217_MINOR_UNITS, ISO_4217_PUBLISHED = _load_iso4217()
"""Code → minor units for every active ISO 4217 currency and fund; the list's date
(``YYYY-MM-DD``, from the table's ``# published:`` line)."""


class MoneyError(ValueError):
    """An amount or currency that cannot be settled as given."""


def is_known_currency(code: str) -> bool:
    """True for an active ISO 4217 code with minor units (not metals, SDR or test codes)."""
    return code in ISO_4217_MINOR_UNITS


def minor_units(currency: str) -> int:
    """Number of fraction digits of ``currency`` (ISO 4217 list one)."""
    try:
        return ISO_4217_MINOR_UNITS[currency]
    except KeyError:
        raise MoneyError(f"unknown currency {currency!r}") from None


def parse_amount(text: str, currency: str) -> Decimal:
    """Parse a decimal string, positive, with at most the currency's minor units."""
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError) as exc:
        raise MoneyError(f"amount {text!r} is not a decimal number") from exc
    if not value.is_finite() or value <= 0:
        raise MoneyError(f"amount {text!r} must be positive")
    digits = minor_units(currency)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > digits:
        raise MoneyError(
            f"amount {text!r} has more fraction digits than {currency} allows ({digits})")
    return value


def format_plain(value: Decimal, currency: str) -> str:
    """Canonical string for ``value``: exactly the currency's minor units (``1250.00``)."""
    digits = minor_units(currency)
    quantum = Decimal(1).scaleb(-digits)
    return str(value.quantize(quantum))
