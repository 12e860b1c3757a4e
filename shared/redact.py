"""Masking for what an operator sees (console pages, ``/v1/deadletters`` bodies).

Builds on the log redaction (:func:`shared.logs.redact_text`: webhook secrets, bearer
tokens, card numbers, IBANs, digit runs of eight or more, e-mail local parts) and
adds IBAN-like strings, URL paths and queries (``shared/pii.py``) and secret-named
keys, so a page or an API answer never carries a secret, a full account number or a
receiver's URL path. Masking keeps the last four characters, which is what an
operator needs to tell two accounts apart.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.logs import redact_text
from shared.pii import mask_urls

_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_SECRET_KEY = re.compile(r"(secret|token|password|authorization|api_key|signature)", re.I)


def mask_text(text: str) -> str:
    """``text`` with URL paths and queries, IBAN-like strings, card numbers and long digit
    runs reduced (``https://host/…``, ``…`` + last four)."""
    text = mask_urls(text)
    text = _IBAN.sub(lambda m: "…" + m.group(0).replace(" ", "")[-4:], text)
    return redact_text(text)


def mask(value: Any) -> Any:
    """A copy of ``value`` (JSON-like) safe to show: secret-named keys blanked, text masked."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: "[redacted]" if _SECRET_KEY.search(str(k)) else mask(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    return value


def mask_body(body: str) -> str:
    """A message body safe to show: pretty JSON when it parses, masked either way."""
    try:
        data = json.loads(body)
    except ValueError:
        return mask_text(body)
    return json.dumps(mask(data), indent=2, ensure_ascii=False, sort_keys=True)
