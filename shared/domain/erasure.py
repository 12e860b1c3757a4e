"""What of a remittance is a payee's personal data, and how it is taken out.

``docs/architecture.md``, "Data lifecycle" (erasure). Personal data is what names or
reaches a person: names, e-mail and postal addresses, account digits and IBANs,
webhook URLs and secrets. Amounts, currencies, dates, ids and states are kept: the
financial record stays whole. One rule serves the live jobs (their stored payload,
advice and delivery, JSON text included), the reference data and the archive's
clear part (:func:`scrub_job`); :func:`subject_of` says whose data a job holds.
"""

from __future__ import annotations

import json
from typing import Any

ERASED = "[erased]"
PERSONAL_KEYS = frozenset({
    "name", "email", "account_last4", "webhook_url", "webhook_secret", "address",
    "postal_address", "phone", "iban", "debtor_name", "debtor_iban", "debtor_account",
    "creditor_name", "creditor_iban", "creditor_account", "ultimate_creditor",
    "ultimate_debtor", "remittance_information"})


def scrub(value: Any) -> Any:
    """``value`` with every personal field replaced by ``[erased]`` (JSON text too)."""
    if isinstance(value, dict):
        return {k: (ERASED if k in PERSONAL_KEYS and v not in (None, "") else scrub(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        cleaned = scrub(parsed)
        return value if cleaned == parsed else json.dumps(cleaned, separators=(",", ":"))
    return value


def scrub_job(job: dict[str, Any]) -> dict[str, Any]:
    """A job item with its personal data erased (attributes and JSON text alike)."""
    return {k: (ERASED if k in PERSONAL_KEYS and v not in (None, "") else scrub(v))
            for k, v in job.items()}


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def subject_of(job: dict[str, Any]) -> str | None:
    """The payee whose personal data a job holds: the remittance's partner message names
    it, the notification's payload (the advice) carries it under ``payee``."""
    for source in (job, _json(job.get("payload")), _json(job.get("advice"))):
        if source.get("payee_id"):
            return str(source["payee_id"])
        payee = source.get("payee")
        if isinstance(payee, dict) and payee.get("payee_id"):
            return str(payee["payee_id"])
    return None
