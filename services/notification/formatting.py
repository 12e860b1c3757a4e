"""Locale-aware formatting of money, dates and account numbers for notifications.

Everything here is pure and deterministic: the same inputs give the same text on
every machine (Babel ships its own CLDR data; nothing depends on the OS locale).
Money is ``Decimal`` end to end; a ``float`` is refused rather than silently
rounded, and an amount with more fraction digits than the currency has is an
error, never a rounding.
"""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Final, Literal

from babel import Locale, UnknownLocaleError
from babel.dates import format_date as babel_format_date
from jinja2 import Environment, pass_context
from jinja2.runtime import Context

from shared.domain.money import MoneyError, minor_units

ROOT_LOCALE: Final = "en"
MASK: Final = "••••"

DateStyle = Literal["short", "medium", "long", "full"]


@lru_cache(maxsize=256)
def babel_locale(tag: str) -> Locale:
    """The Babel locale for a BCP 47 tag (``de-AT``, ``pt_BR``, ``ja``).

    Never raises: an unknown region falls back to the language, an unknown
    language to English, so a bad locale in reference data degrades the wording,
    not the delivery.
    """
    cleaned = tag.strip().replace("_", "-")
    for candidate in (cleaned, cleaned.split("-", 1)[0]):
        if not candidate:
            continue
        try:
            return Locale.parse(candidate, sep="-")
        except (UnknownLocaleError, ValueError, TypeError):
            continue
    return Locale.parse(ROOT_LOCALE)


def normalize_tag(tag: str) -> str:
    """Canonical BCP 47 spelling: ``pt_br`` → ``pt-BR``, ``ZH-hant-tw`` → ``zh-Hant-TW``."""
    parts = [p for p in tag.strip().replace("_", "-").split("-") if p]
    if not parts:
        return ROOT_LOCALE
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            out.append(part.title())
        elif (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit()):
            out.append(part.upper())
        else:
            out.append(part.lower())
    return "-".join(out)


def locale_chain(tag: str | None, *, root: str = ROOT_LOCALE) -> list[str]:
    """Fallback order for ``tag``, most specific first, always ending with ``root``.

    ``de-AT`` → ``[de-AT, de, en]``; ``zh-Hant-TW`` → ``[zh-Hant-TW, zh-Hant, zh, en]``.
    """
    parts = normalize_tag(tag or root).split("-")
    chain = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    if root not in chain:
        chain.append(root)
    return list(dict.fromkeys(chain))


def _as_decimal(amount: object) -> Decimal:
    if isinstance(amount, bool | float):
        raise TypeError(f"money must be Decimal, int or str, not {type(amount).__name__}")
    if isinstance(amount, Decimal):
        value = amount
    elif isinstance(amount, int | str):
        try:
            value = Decimal(str(amount))
        except InvalidOperation as exc:
            raise ValueError(f"{amount!r} is not a decimal amount") from exc
    else:
        raise TypeError(f"money must be Decimal, int or str, not {type(amount).__name__}")
    if not value.is_finite():
        raise ValueError(f"{amount!r} is not a finite amount")
    return value


def format_money(amount: Decimal | int | str, currency: str, locale: str) -> str:
    """``amount`` in ``currency`` as a reader of ``locale`` expects it.

    Uses ISO 4217 minor units (``shared.domain.money``), so ``JPY`` never shows decimals and
    ``EUR`` always shows two: ``1.234,56 €`` (de-DE, with a no-break space),
    ``￥150,000`` (ja-JP), ``$1,250.00`` (en-US).

    Raises:
        TypeError: ``amount`` is a float.
        ValueError: ``amount`` has more fraction digits than ``currency`` allows
            (displaying a rounded figure would misstate the payment).
    """
    value = _as_decimal(amount)
    loc = babel_locale(locale)
    try:
        digits = minor_units(currency)
    except MoneyError:
        digits = None  # unknown to ISO tables: let CLDR decide
    try:
        exact = digits is None or value == value.quantize(Decimal(1).scaleb(-digits))
    except InvalidOperation as exc:
        raise ValueError(f"{value} cannot be shown in {currency}") from exc
    if not exact:
        raise ValueError(f"{value} has more fraction digits than {currency} allows ({digits})")
    pattern = loc.currency_formats["standard"]
    if digits is None:
        return str(pattern.apply(value, loc, currency=currency))
    pattern = copy.copy(pattern)
    pattern.frac_prec = (digits, digits)
    return str(pattern.apply(value, loc, currency=currency, currency_digits=False))


def parse_date(value: str | dt.date) -> dt.date:
    """A calendar date from ``2026-11-24``, an ISO timestamp (its own local date) or a date."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = value.strip()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date()


def format_date(value: str | dt.date, locale: str, *, style: DateStyle = "long") -> str:
    """A date in the locale's own style: ``24. November 2026`` (de), ``2026年11月24日`` (ja)."""
    return babel_format_date(parse_date(value), format=style, locale=babel_locale(locale))


def mask_account(last4: str | None) -> str:
    """``•••• 1234``: only ever the last four characters, whatever is passed in."""
    if not last4:
        return ""
    return f"{MASK} {str(last4)[-4:]}"


# --- Jinja filters ------------------------------------------------------------------------
# The formatting locale is a per-render context variable, so one shared environment
# serves every locale without any per-render mutation.

FORMAT_LOCALE_VAR: Final = "format_locale"


def _context_locale(ctx: Context) -> str:
    value = ctx.get(FORMAT_LOCALE_VAR)
    return str(value) if value else ROOT_LOCALE


@pass_context
def _money_filter(ctx: Context, amount: Decimal | int | str, currency: str) -> str:
    return format_money(amount, currency, _context_locale(ctx))


@pass_context
def _date_filter(ctx: Context, value: str | dt.date | None, style: DateStyle = "long") -> str:
    if value is None or value == "":
        return ""
    return format_date(value, _context_locale(ctx), style=style)


def register_filters(env: Environment) -> None:
    """Install ``money(currency)``, ``date(style='long')`` and ``mask_account`` on ``env``.

    ``money`` and ``date`` read the ``format_locale`` variable of the render context.
    """
    env.filters["money"] = _money_filter
    env.filters["date"] = _date_filter
    env.filters["mask_account"] = mask_account
