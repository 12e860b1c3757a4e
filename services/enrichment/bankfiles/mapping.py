"""From an extracted bank transaction (a :class:`Draft`) to a partner notification.

Format-independent rules live here: the ``request_id`` rule, amounts, dates,
payee and invoice rules, reason texts, and the final check against
``PartnerNotification`` (the same rules as JSON intake). The field-by-field
mapping is documented in docs/bankfiles.md.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import ValidationError

from services.enrichment.bankfiles.types import (
    Transaction,
    TransactionRejected,
    TransactionRejectReason,
)
from services.enrichment.models import PartnerNotification
from shared.domain.money import is_known_currency, minor_units

PARTNER = re.compile(r"^[A-Z0-9_]{2,32}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")
_MAX_ID = 128
_HASH_CHARS = 16

#: A token of unstructured remittance text counts as an invoice id when it has a
#: letter prefix followed by at least two digits (INV-1001, INV1001, RF18...).
DEFAULT_INVOICE_PATTERN = re.compile(r"^[A-Za-z]{1,10}[-_/.]?[0-9]{2,}[A-Za-z0-9._/-]*$")
_TOKEN_SPLIT = re.compile(r"[\s,;]+")
_TOKEN_STRIP = ".:/()[]"
_MAX_INVOICES = 100

Status = Literal["SETTLED", "REJECTED", "RETURNED"]

#: Common ExternalStatusReason1Code / ExternalReturnReason1Code texts (ISO names).
REASON_TEXTS: dict[str, str] = {
    "AC01": "Incorrect account number", "AC04": "Closed account number",
    "AC06": "Blocked account", "AC13": "Invalid debtor account type",
    "AG01": "Transaction forbidden", "AG02": "Invalid bank operation code",
    "AM01": "Zero amount", "AM02": "Not allowed amount", "AM04": "Insufficient funds",
    "AM05": "Duplication", "AM09": "Wrong amount", "BE04": "Missing creditor address",
    "BE05": "Unrecognised initiating party", "CUST": "Requested by customer",
    "DT01": "Invalid date", "DUPL": "Duplicate payment", "FF01": "Invalid file format",
    "FOCR": "Following cancellation request", "MD01": "No mandate",
    "MD07": "End customer deceased", "MS02": "Not specified reason customer generated",
    "MS03": "Not specified reason agent generated", "RC01": "Bank identifier incorrect",
    "RR01": "Missing debtor account or identification",
    "RR02": "Missing debtor name or address", "RR03": "Missing creditor name or address",
    "RR04": "Regulatory reason", "TM01": "Invalid cut off time",
}


@dataclass(frozen=True)
class Options:
    """Caller-given parameters of one file (see ``read_bank_file``)."""

    partner: str
    source_key: str | None = None
    payee_map: Mapping[str, str] | None = None
    payment_method: str | None = None
    invoice_pattern: re.Pattern[str] = DEFAULT_INVOICE_PATTERN
    invoice_from_end_to_end: bool = False


@dataclass
class Draft:
    """What the extractor found for one transaction, before rules are applied.

    ``status`` is None when no notification is due (``skip_reason`` says why);
    ``bank_status`` keeps the raw code either way.
    """

    message_type: str
    status: Status | None
    bank_status: str
    reference: str | None
    amount: str | None
    currency: str | None
    creditor_id: str | None
    creditor_name: str | None
    invoice_refs: list[str]
    unstructured: list[str]
    occurred_at: str | None
    value_date: str | None = None
    service_level: str | None = None
    reason_code: str | None = None
    reason_info: str | None = None
    skip_reason: TransactionRejectReason | None = None
    end_to_end: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Reject(Exception):
    """Raised by a rule; turned into :class:`TransactionRejected` by :func:`finish`."""

    def __init__(self, reason: TransactionRejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: TransactionRejectReason = reason
        self.detail = detail


def request_id(partner: str, reference: str) -> str:
    """Deterministic request id of a bank transaction: ``ISO-{partner}-{reference}``.

    When the reference has characters outside ``[A-Za-z0-9._:-]`` or the result
    would pass 128 characters, the id becomes ``ISOH-{partner}-{kept}-{hash}``:
    ``kept`` is the sanitised reference cut to fit, ``hash`` the first 16 hex
    digits of SHA-256 over ``partner`` and the raw reference. The two prefixes
    cannot collide with each other (a partner code has no ``-``), so clean
    references map one to one and altered ones only collide if SHA-256 does.
    """
    plain = f"ISO-{partner}-{reference}"
    if reference and not _UNSAFE.search(reference) and len(plain) <= _MAX_ID:
        return plain
    digest = hashlib.sha256(f"{partner}\x1f{reference}".encode()).hexdigest()[:_HASH_CHARS]
    head = f"ISOH-{partner}-"
    room = _MAX_ID - len(head) - 1 - _HASH_CHARS
    kept = _UNSAFE.sub("-", reference)[:room]
    return f"{head}{kept}-{digest}" if kept else f"{head}{digest}"


def canonical_amount(text: str | None, currency: str | None) -> tuple[str, str]:
    """(amount, currency) as the contract wants them: a plain decimal string that
    has exactly the currency's minor units at most, and a known ISO 4217 code."""
    if text is None:
        raise Reject("missing_amount", "no amount in the transaction (an entry with several "
                     "transactions must give each one's amount)")
    if not currency or not is_known_currency(currency):
        raise Reject("unknown_currency", f"currency {currency!r} is not a known ISO 4217 code")
    try:
        value = Decimal(text.strip())
    except InvalidOperation as exc:
        raise Reject("invalid_amount", f"amount {text!r} is not a decimal") from exc
    if not value.is_finite() or value <= 0:
        raise Reject("invalid_amount", f"amount {text!r} must be positive")
    quantum = Decimal(1).scaleb(-minor_units(currency))
    exact = value.quantize(quantum)
    if exact != value:
        raise Reject("invalid_amount", f"amount {text!r} has more fraction digits than "
                     f"{currency} allows")
    return format(exact, "f"), currency


def iso_datetime(text: str | None) -> str:
    """An ISODateTime as an offset-aware ISO 8601 string; no offset means UTC."""
    if not text:
        raise Reject("invalid_date", "no creation or booking date-time")
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise Reject("invalid_date", f"date-time {text!r} is not ISO 8601") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def iso_date(text: str | None) -> str | None:
    """An ISODate (or the date part of an ISODateTime) as ``YYYY-MM-DD``."""
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip()[:10]).isoformat()
    except ValueError as exc:
        raise Reject("invalid_date", f"date {text!r} is not ISO 8601") from exc


def invoice_ids(draft: Draft, pattern: re.Pattern[str], from_end_to_end: bool = False
                ) -> list[str]:
    """The rules of docs/bankfiles.md, "Reference rules", in order: structured
    references (``Strd/RfrdDocInf/Nb``, ``Strd/CdtrRefInf/Ref``); only without
    them, invoice-like tokens of ``Ustrd``; only without those, and only for a
    partner that switched it on, the end-to-end id."""
    found = [ref.strip() for ref in draft.invoice_refs if ref.strip()]
    if not found:
        for line in draft.unstructured:
            for token in _TOKEN_SPLIT.split(line):
                token = token.strip(_TOKEN_STRIP)
                if token and pattern.match(token):
                    found.append(token)
    if not found and from_end_to_end and draft.end_to_end:
        found.append(draft.end_to_end)
    unique = list(dict.fromkeys(found))
    if not unique:
        hint = "" if from_end_to_end else (
            "; the partner's end-to-end fallback is off" if draft.end_to_end else "")
        raise Reject("missing_invoice_ref",
                     f"no invoice reference in the remittance information{hint}")
    return unique[:_MAX_INVOICES]


def payee_id(draft: Draft, payee_map: Mapping[str, str] | None) -> str:
    """Creditor id (else name), translated through ``payee_map`` when one is given.

    A given map is authoritative: a creditor missing from it is rejected rather
    than passed through under a bank-side identifier.
    """
    raw = (draft.creditor_id or draft.creditor_name or "").strip()
    if not raw:
        raise Reject("missing_payee", "no creditor identification or name")
    if payee_map is None:
        return raw
    if raw not in payee_map:
        raise Reject("unknown_payee", f"creditor {raw!r} is not in the payee map")
    return payee_map[raw]


def method(draft: Draft, currency: str, given: str | None) -> str:
    """The caller's method if given; else SEPA for EUR unless a non-SEPA service
    level is stated; else SWIFT."""
    if given:
        return given
    if currency == "EUR" and draft.service_level in (None, "SEPA"):
        return "SEPA"
    return "SWIFT"


def notification(draft: Draft, options: Options) -> dict[str, Any]:
    """Apply every rule; the dict is JSON-ready (strings, lists)."""
    if draft.status is None:
        if draft.skip_reason == "unexpected_credit":
            raise Reject("unexpected_credit", f"booked credit {draft.bank_status!r} is money "
                         "received, not a payout")
        raise Reject("not_final", f"bank status {draft.bank_status!r} is not final")
    if not draft.reference:
        raise Reject("missing_reference", "no end-to-end id or bank reference")
    amount, currency = canonical_amount(draft.amount, draft.currency)
    body: dict[str, Any] = {
        "request_id": request_id(options.partner, draft.reference),
        "partner": options.partner,
        "status": draft.status,
        "payment_method": method(draft, currency, options.payment_method),
        "amount": amount,
        "currency": currency,
        "payee_id": payee_id(draft, options.payee_map),
        "invoice_ids": invoice_ids(draft, options.invoice_pattern,
                                   options.invoice_from_end_to_end),
        "occurred_at": iso_datetime(draft.occurred_at),
        "partner_reference": draft.reference,
        "iso_message_type": draft.message_type,
        "bank_status": draft.bank_status,
    }
    value_date = iso_date(draft.value_date)
    if value_date:
        body["value_date"] = value_date
    if draft.reason_code:
        body["reason_code"] = draft.reason_code
        text = REASON_TEXTS.get(draft.reason_code) or draft.reason_info
        if text:
            body["reason_text"] = text
    if options.source_key:
        body["source_file"] = options.source_key
    body.update(draft.extras)
    return body


def finish(index: int, draft: Draft, options: Options) -> Transaction | TransactionRejected:
    """The stream item for one transaction: a checked notification or a rejection."""
    try:
        body = notification(draft, options)
    except Reject as exc:
        return TransactionRejected(index, exc.reason, exc.detail)
    try:
        PartnerNotification.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors())
        return TransactionRejected(index, "invalid_notification", problems)
    return Transaction(index, body)
