"""The masker, property-wise (shared/pii.py): no card number and no IBAN survives.

Hypothesis builds Luhn-valid 13-19 digit numbers in every separator style and
valid IBANs of every country (ISO 13616 lengths, mod-97 check digits) in either
case, glued into text; both the log redaction and the operator views' masking
must leave nothing but the last four.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.logs import redact_text
from shared.pii import iban_ok, luhn_ok
from shared.redact import mask_text

MASKERS: list[Callable[[str], str]] = [redact_text, mask_text]

# ISO 13616 registry: country -> IBAN length.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
    "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
BBAN_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
PREFIXES = ["", " ", "pan_", "x", "card ", "#", "id:", "PAN=", "(", "iban=", "IBAN: "]
SUFFIXES = ["", " ", "x", "_exp", ".", " ok", ")", ",", " end", " 12", " abcd"]


def with_check_digit(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    return with_check_digit(body)


@st.composite
def separated(draw: st.DrawFn, digits: str) -> str:
    sep = draw(st.sampled_from(["", " ", "-", ".", "_", "/", "\t"]))
    style = draw(st.sampled_from(["fours", "amex", "anywhere"]))
    if style == "fours":
        cuts = set(range(4, len(digits), 4))
    elif style == "amex":
        cuts = {4, 10}
    else:
        cuts = draw(st.sets(st.integers(1, len(digits) - 1)))
    return "".join((sep if i in cuts else "") + d for i, d in enumerate(digits))


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country, length = draw(st.sampled_from(sorted(IBAN_LENGTHS.items())))
    bban = draw(st.text(BBAN_CHARS, min_size=length - 4, max_size=length - 4))
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


def digits_of(text: str) -> str:
    return re.sub(r"\D", "", text)


@pytest.mark.parametrize("masker", MASKERS, ids=["logs", "operator-views"])
@given(number=card_numbers(), data=st.data())
def test_no_luhn_valid_card_number_survives_in_any_separator_style(
        masker: Callable[[str], str], number: str, data: st.DataObject) -> None:
    written = data.draw(separated(number))
    text = data.draw(st.sampled_from(PREFIXES)) + written + data.draw(st.sampled_from(SUFFIXES))
    masked = masker(text)
    assert number not in digits_of(masked), (text, masked)
    assert number[-4:] in digits_of(masked)  # the last four stay, to tell cards apart


@pytest.mark.parametrize("masker", MASKERS, ids=["logs", "operator-views"])
@given(iban=ibans(), spaced=st.booleans(), lower=st.booleans(),
       prefix=st.sampled_from([p for p in PREFIXES if p != "x"]),
       suffix=st.sampled_from(SUFFIXES))
def test_no_iban_of_any_country_survives_in_either_case(
        masker: Callable[[str], str], iban: str, spaced: bool, lower: bool, prefix: str,
        suffix: str) -> None:
    assert iban_ok(iban)
    written = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4)) if spaced else iban
    written = written.lower() if lower else written
    text = prefix + written + suffix
    masked = masker(text)
    assert iban not in re.sub(r"[^A-Z0-9]", "", masked.upper()), (text, masked)


@pytest.mark.parametrize("masker", MASKERS, ids=["logs", "operator-views"])
@pytest.mark.parametrize("text", ["pan_4111111111111111", "x4111111111111111",
                                  "4111.1111.1111.1111", "iban de89370400440532013000",
                                  "de89 3704 0044 0532 0130 00"])
def test_the_reported_gaps_are_closed(masker: Callable[[str], str], text: str) -> None:
    masked = masker(text)
    assert "411111111111" not in digits_of(masked) and "370400440532" not in masked, masked


def test_operator_views_show_a_urls_origin_only() -> None:
    text = "POST https://hooks.payee.example:8443/in/t0ken-abc?sig=s3cr3t#x failed"
    assert mask_text(text) == "POST https://hooks.payee.example:8443/… failed"
    assert mask_text("https://hooks.payee.example/") == "https://hooks.payee.example/"
