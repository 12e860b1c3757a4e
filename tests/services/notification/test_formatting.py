"""Money, dates and account masking in the payee's locale."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from services.notification.formatting import (
    format_date,
    format_money,
    locale_chain,
    mask_account,
    normalize_tag,
)


@pytest.mark.parametrize(("amount", "currency", "locale", "expected"), [
    ("1234.56", "EUR", "de-DE", "1.234,56\xa0€"),
    ("150000", "JPY", "ja-JP", "￥150,000"),
    ("1250.00", "USD", "en-US", "$1,250.00"),
    ("1250", "USD", "en-US", "$1,250.00"),          # minor units are always shown
    ("1234.56", "EUR", "de-AT", "€\xa01.234,56"),
    ("1234.56", "EUR", "fr", "1\u202f234,56\xa0€"),
    ("1234.56", "EUR", "pt-BR", "€\xa01.234,56"),
    ("1.234", "KWD", "en", "KWD1.234"),              # ISO 4217: three minor units
    ("150000", "JPY", "en-US", "¥150,000"),
])
def test_format_money(amount: str, currency: str, locale: str, expected: str) -> None:
    assert format_money(Decimal(amount), currency, locale) == expected


def test_money_refuses_float_and_rounding() -> None:
    with pytest.raises(TypeError):
        format_money(1234.56, "EUR", "en")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fraction digits"):
        format_money(Decimal("100.50"), "JPY", "ja-JP")
    assert format_money(Decimal("100.00"), "JPY", "ja-JP") == "￥100"  # exact, so fine


def test_unknown_locale_degrades_to_english() -> None:
    assert format_money(Decimal("1"), "USD", "xx-YY") == "$1.00"


@pytest.mark.parametrize(("locale", "style", "expected"), [
    ("de-DE", "long", "24. November 2026"),
    ("de-DE", "medium", "24.11.2026"),
    ("en-US", "medium", "Nov 24, 2026"),
    ("en", "long", "November 24, 2026"),
    ("ja-JP", "long", "2026年11月24日"),
    ("fr", "long", "24 novembre 2026"),
    ("pt-BR", "long", "24 de novembro de 2026"),
])
def test_format_date(locale: str, style: str, expected: str) -> None:
    assert format_date("2026-11-24", locale, style=style) == expected  # type: ignore[arg-type]


def test_format_date_accepts_timestamps_and_dates() -> None:
    assert format_date("2026-11-24T09:00:00+01:00", "en", style="medium") == "Nov 24, 2026"
    assert format_date("2026-11-25T01:30:00Z", "en", style="medium") == "Nov 25, 2026"
    assert format_date(dt.date(2026, 1, 2), "de", style="medium") == "02.01.2026"


def test_mask_account() -> None:
    assert mask_account("1234") == "•••• 1234"
    assert mask_account("DE89370400440532013000") == "•••• 3000"
    assert mask_account(None) == ""


@pytest.mark.parametrize(("tag", "chain"), [
    ("de-AT", ["de-AT", "de", "en"]),
    ("pt-BR", ["pt-BR", "pt", "en"]),
    ("ja-JP", ["ja-JP", "ja", "en"]),
    ("pt_br", ["pt-BR", "pt", "en"]),
    ("en-US", ["en-US", "en"]),
    ("zh-hant-tw", ["zh-Hant-TW", "zh-Hant", "zh", "en"]),
    (None, ["en"]),
])
def test_locale_chain(tag: str | None, chain: list[str]) -> None:
    assert locale_chain(tag) == chain


def test_normalize_tag() -> None:
    assert normalize_tag("DE-at") == "de-AT"
    assert normalize_tag("es-419") == "es-419"
