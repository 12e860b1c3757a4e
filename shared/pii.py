"""Finding card numbers, IBANs and URL paths in free text, to mask them.

Used by the log redaction (:func:`shared.logs.redact_text`) and the operator views
(:func:`shared.redact.mask_text`). What is guaranteed (and tested property-wise in
``tests/shared/test_pii.py``):

- **Card numbers:** every run of 13 to 19 digits that passes the Luhn check is
  masked to its last four, whatever separates its digits (nothing, spaces, dashes,
  dots, underscores, slashes) and whatever is glued to it (``pan_4111…``,
  ``x4111…``): only a neighbouring digit stops a match, never a word character.
- **IBANs:** every string that is an IBAN (two letters, two check digits, 11 to 30
  letters or digits, the ISO 13616 mod-97 check holds) is masked to its country
  and last four, upper or lower case, contiguous or in groups of four.
- **URLs** (operator views only): scheme, host and port stay; path, query and
  fragment, which may carry tokens, become ``/…``.
"""

from __future__ import annotations

import re

_SEP = r"[\s.\-_/]"
_PAN = re.compile(rf"(?<!\d)\d(?:{_SEP}?\d){{12,}}(?!\d)")
_GROUP = re.compile(r"\d+")
_IBAN = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})\d{2}"
                   r"(?:(?: [A-Za-z0-9]{4})+(?: [A-Za-z0-9]{1,3})?|[A-Za-z0-9]{11,30})")
# ISO 13616 registry (SWIFT, 2025): country -> IBAN length. A candidate is checked at
# its country's length only, so text glued to an IBAN still masks it while a random
# hex id rarely passes (one mod-97 check per candidate).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}
_URL = re.compile(r"\b(https?://[^\s/?#\"'<>]+)([/?#][^\s\"'<>]*)?", re.I)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    """ISO 13616: move the first four to the end, letters to numbers, mod 97 is 1."""
    if not 15 <= len(compact) <= 34:
        return False
    moved = (compact[4:] + compact[:4]).upper()
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


def _digits_last4(text: str) -> str:
    return "…" + re.sub(r"\D", "", text)[-4:]


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _mask_run(run: str) -> str:
    """Every card in one separated digit run; the run may hold several, or a card and
    more digits ("4111 1111 1111 1111 12"). Linear in the run's length: Luhn sums of
    any stretch come from prefix sums per position parity."""
    spans = [(g.start(), g.end()) for g in _GROUP.finditer(run)]
    digits = [int(c) for c in run if c.isdigit()]
    plain = [[0], [0]]   # plain[p][k]: sum of digits before k at positions of parity p
    double = [[0], [0]]
    for k, d in enumerate(digits):
        for p in (0, 1):
            plain[p].append(plain[p][-1] + (d if k % 2 == p else 0))
            double[p].append(double[p][-1] + (_DOUBLED[d] if k % 2 == p else 0))
    bounds, at = [], 0   # each group as [first digit, after last digit)
    for start, end in spans:
        bounds.append((at, at + end - start))
        at += end - start

    def luhn(a: int, b: int) -> bool:
        q = (b - 1) % 2  # the last digit is never doubled, every other one to its left is
        return (plain[q][b] - plain[q][a] + double[1 - q][b] - double[1 - q][a]) % 10 == 0

    out: list[str] = []
    pos = i = 0
    while i < len(bounds):
        hit = -1
        for j in range(i, len(bounds)):  # the longest stretch of whole groups that is a card
            count = bounds[j][1] - bounds[i][0]
            if count > 19:
                break
            if count >= 13 and luhn(bounds[i][0], bounds[j][1]):
                hit = j
        if hit < 0:
            i += 1
            continue
        out += [run[pos:spans[i][0]], _digits_last4(run[spans[i][0]:spans[hit][1]])]
        pos, i = spans[hit][1], hit + 1
    return "".join(out) + run[pos:]


def mask_pans(text: str) -> str:
    """Luhn-valid 13-19 digit runs, any separator, masked to ``…`` + last four."""
    return _PAN.sub(lambda m: _mask_run(m.group(0)), text)


def mask_ibans(text: str) -> str:
    """Valid IBANs (either case, spaced or not) masked to country + ``…`` + last four."""
    def one(match: re.Match[str]) -> str:
        found = match.group(0)
        country = match.group(1)
        length = IBAN_LENGTHS.get(country.upper(), len(found.replace(" ", "")))
        # The candidate may run on into glued text or a following word: cut it at
        # the country's length, counted without spaces.
        seen = cut = 0
        for cut, ch in enumerate(found, 1):  # noqa: B007 (cut is used after the loop)
            seen += ch != " "
            if seen == length:
                break
        compact = found[:cut].replace(" ", "")
        if len(compact) != length or not iban_ok(compact):
            return found
        return f"{country}…{compact[-4:]}" + found[cut:]

    return _IBAN.sub(one, text)


def mask_urls(text: str) -> str:
    """``https://host:port/path?query`` → ``https://host:port/…``."""
    return _URL.sub(lambda m: m.group(1) + ("/…" if m.group(2) and m.group(2) != "/"
                                            else m.group(2) or ""), text)


def mask_url(url: str | None) -> str | None:
    """One URL with its path and query masked (``None`` stays ``None``)."""
    return None if url is None else mask_urls(url)
