"""Currencies and amounts: money is ``Decimal``, never ``float``.

Minor units come from ISO 4217 (via Babel's CLDR data, with the ISO list as the
authority for the handful of currencies where CLDR's cash digits differ).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from babel.numbers import get_currency_precision, list_currencies

# ISO 4217 minor units where CLDR's "digits" are not the ISO figure we settle in.
_ISO_MINOR_UNITS: dict[str, int] = {
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
    "JPY": 0, "KRW": 0, "VND": 0, "ISK": 0, "CLP": 0, "PYG": 0, "UGX": 0,
    "XAF": 0, "XOF": 0, "XPF": 0, "BIF": 0, "DJF": 0, "GNF": 0, "KMF": 0,
    "RWF": 0, "VUV": 0,
}
# Codes that are in CLDR but are not money a partner settles in.
_NOT_SETTLEMENT = {"XAU", "XAG", "XPT", "XPD", "XDR", "XTS", "XXX", "XBA", "XBB", "XBC", "XBD",
                   "XSU", "XUA"}
_KNOWN: frozenset[str] = frozenset(c for c in list_currencies() if c not in _NOT_SETTLEMENT)


class MoneyError(ValueError):
    """An amount or currency that cannot be settled as given."""


def is_known_currency(code: str) -> bool:
    return code in _KNOWN


def minor_units(currency: str) -> int:
    """Number of fraction digits of ``currency`` (ISO 4217)."""
    if currency not in _KNOWN:
        raise MoneyError(f"unknown currency {currency!r}")
    if currency in _ISO_MINOR_UNITS:
        return _ISO_MINOR_UNITS[currency]
    return int(get_currency_precision(currency))


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
