"""Enrichment business: validate → enrich → transform into a ``RemittanceAdvice``."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from services.enrichment.models import PartnerNotification
from shared.domain.advice import AdviceInvoice, AdvicePayee, RemittanceAdvice
from shared.domain.directory import PayeeDirectory
from shared.domain.money import format_plain, minor_units
from shared.pipeline.intake import InvalidMessage, Parsed
from shared.pipeline.jobs import content_hash, now_iso
from shared.pipeline.tasks import BusinessError, Task


def parse_partner_message(body: str) -> Parsed:
    """Intake parser: a partner notification, or :class:`InvalidMessage` with a reason."""
    if not body or not body.strip():
        raise InvalidMessage("empty_body", "message body is empty")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise InvalidMessage("invalid_json", f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidMessage("not_an_object", f"body is JSON {type(data).__name__}, not an object")
    try:
        message = PartnerNotification.model_validate(data)
    except ValidationError as exc:
        raise InvalidMessage("schema", _summarise(exc)) from exc
    return Parsed(request_id=message.request_id, payload=body, content_hash=content_hash(data))


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:8]:
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


async def enrich(message: PartnerNotification, *, directory: PayeeDirectory,
                 extra_fields: frozenset[str] = frozenset()) -> RemittanceAdvice:
    """Turn a partner confirmation into an advice, or raise :class:`BusinessError`.

    Only the partner extra fields named in ``extra_fields``
    (``REMITFLOW_ADVICE_EXTRA_FIELDS``) travel on in the advice — to SNS, the
    notification job, the API and webhooks. Partners put anything in extras
    (names, account numbers, addresses); the rest stays only on the stored payload.
    """
    payee, invoices = await directory.lookup(message.payee_id, message.invoice_ids)
    if payee is None:
        raise BusinessError("UnknownPayee", f"payee {message.payee_id} is not known")
    missing = [i for i in message.invoice_ids if i not in invoices]
    if missing:
        raise BusinessError("UnknownInvoice", f"invoices not found: {', '.join(missing)}")
    ordered = [invoices[i] for i in message.invoice_ids]
    foreign = [i.invoice_id for i in ordered if i.payee_id != payee.payee_id]
    if foreign:
        raise BusinessError("InvoicePayeeMismatch",
                            f"invoices {', '.join(foreign)} belong to another payee")
    wrong_currency = [i.invoice_id for i in ordered if i.currency != message.currency]
    if wrong_currency:
        raise BusinessError("CurrencyMismatch", f"invoices {', '.join(wrong_currency)} are not "
                            f"in {message.currency}")
    total = sum((i.amount for i in ordered), Decimal(0))
    if total != message.amount:
        paid = format_plain(message.amount, message.currency)
        raise BusinessError("AmountMismatch", f"paid {paid} but invoices total "
                            f"{format_plain(total, message.currency)} {message.currency}")
    purpose = Counter(i.purpose for i in ordered).most_common(1)[0][0]
    units = minor_units(message.currency)
    return RemittanceAdvice(
        request_id=message.request_id, payment_id=message.payment_id, partner=message.partner,
        partner_status=message.status, payment_method=message.payment_method,
        amount=Decimal(format_plain(message.amount, message.currency)),
        currency=message.currency, minor_units=units,
        value_date=message.value_date.isoformat() if message.value_date else None,
        occurred_at=message.occurred_at.isoformat(), partner_reference=message.partner_reference,
        purpose=purpose,
        payee=AdvicePayee(
            payee_id=payee.payee_id, name=payee.name, email=payee.email,
            payee_type=payee.payee_type, country=payee.country, locale=payee.locale,
            channel=payee.channel, webhook_url=payee.webhook_url,
            account_last4=payee.account_last4),
        invoices=[AdviceInvoice(invoice_id=i.invoice_id,
                                amount=Decimal(format_plain(i.amount, i.currency)),
                                currency=i.currency, description=i.description,
                                purpose=i.purpose) for i in ordered],
        extras={k: v for k, v in message.extras.items() if k in extra_fields},
        enriched_at=now_iso())


def task_output(advice: RemittanceAdvice) -> dict[str, Any]:
    """What the workflow needs: the advice to publish and its message attributes."""
    return {"advice_json": advice.model_dump_json(), "attributes": advice.message_attributes()}


async def handle_task(task: Task, *, directory: PayeeDirectory,
                      extra_fields: frozenset[str] = frozenset()) -> dict[str, Any]:
    message = PartnerNotification.model_validate_json(task.job.raw["payload"])
    return task_output(await enrich(message, directory=directory, extra_fields=extra_fields))
