"""Enrichment business: validate → enrich → transform into a ``RemittanceAdvice``."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from services.enrichment.models import PartnerNotification
from shared.domain.advice import AdviceInvoice, AdvicePayee, Purpose, RemittanceAdvice
from shared.domain.directory import PayeeDirectory
from shared.domain.money import format_plain, minor_units
from shared.pipeline.budgets import (
    JOB_ITEM,
    KB,
    TASK_OUTPUT,
    TOPIC_MESSAGE,
    WORKFLOW_STATE,
    Budget,
    escaped_size,
    first_problem,
    inline_size,
    utf8_size,
)
from shared.pipeline.errors import BusinessError
from shared.pipeline.intake import InvalidMessage, Parsed
from shared.pipeline.jobs import content_hash, now_iso
from shared.pipeline.tasks import Task


def parse_partner_message(body: str, *, extra_fields: frozenset[str] = frozenset()) -> Parsed:
    """Intake parser: a partner notification, or :class:`InvalidMessage` with a reason.

    Also measures what the job will carry downstream (``Parsed.sizes``), so intake
    refuses a message whose advice could not be answered, published or stored.
    """
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
    # partner on the item: the operator console and GET /v1/jobs filter by it
    sizes = _estimated_sizes(message, extra_fields)
    # a small payload travels in the execution input too (kind.inline_payload)
    sizes[WORKFLOW_STATE] += inline_size(body)
    return Parsed(request_id=message.request_id, payload=body, content_hash=content_hash(data),
                  extra={"partner": message.partner}, sizes=sizes)


# Room for what enrichment adds from reference data (payee, invoice descriptions).
PAYEE_ALLOWANCE = 4 * KB
INVOICE_ALLOWANCE = 1 * KB
# Published message attributes and the task output's other keys.
ATTRIBUTES_ALLOWANCE = 1 * KB


def advice_sizes(advice_json: str, allowance: int = 0) -> dict[Budget, int]:
    """Bytes the advice costs at each stage: stored on the job item, answered as a JSON
    string in the task output and workflow state (escaped), published as is."""
    raw, escaped = utf8_size(advice_json) + allowance, escaped_size(advice_json) + 2 * allowance
    return {JOB_ITEM: raw, TASK_OUTPUT: escaped + ATTRIBUTES_ALLOWANCE,
            WORKFLOW_STATE: escaped + ATTRIBUTES_ALLOWANCE,
            TOPIC_MESSAGE: raw + ATTRIBUTES_ALLOWANCE}


def _estimated_sizes(message: PartnerNotification, extra_fields: frozenset[str]) -> dict[
        Budget, int]:
    """The advice this message would become, with reference data left blank and allowed for."""
    payee = AdvicePayee(payee_id=message.payee_id, name="", payee_type="individual",
                        country="")
    invoices = [AdviceInvoice(invoice_id=i, amount=message.amount, currency=message.currency,
                              purpose="invoice_payment") for i in message.invoice_ids]
    advice = build_advice(message, payee, invoices, "invoice_payment", extra_fields)
    allowance = PAYEE_ALLOWANCE + INVOICE_ALLOWANCE * len(invoices)
    return advice_sizes(advice.model_dump_json(), allowance)


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
    The payee's webhook URL never enters the advice (its path may carry a secret):
    the notification service reads it from the directory when it delivers.
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
    advice = build_advice(
        message,
        AdvicePayee(payee_id=payee.payee_id, name=payee.name, email=payee.email,
                    payee_type=payee.payee_type, country=payee.country, locale=payee.locale,
                    channel=payee.channel, account_last4=payee.account_last4),
        [AdviceInvoice(invoice_id=i.invoice_id, amount=Decimal(format_plain(i.amount, i.currency)),
                       currency=i.currency, description=i.description, purpose=i.purpose)
         for i in ordered],
        purpose, extra_fields)
    return advice


def build_advice(message: PartnerNotification, payee: AdvicePayee,
                 invoices: list[AdviceInvoice], purpose: Purpose,
                 extra_fields: frozenset[str]) -> RemittanceAdvice:
    """The advice document; only allowlisted extras travel on."""
    return RemittanceAdvice(
        request_id=message.request_id, payment_id=message.payment_id, partner=message.partner,
        partner_status=message.status, payment_method=message.payment_method,
        amount=Decimal(format_plain(message.amount, message.currency)),
        currency=message.currency, minor_units=minor_units(message.currency),
        value_date=message.value_date.isoformat() if message.value_date else None,
        occurred_at=message.occurred_at.isoformat(), partner_reference=message.partner_reference,
        purpose=purpose, payee=payee, invoices=invoices,
        extras={k: v for k, v in message.extras.items() if k in extra_fields},
        enriched_at=now_iso())


Publish = Callable[[str, dict[str, str]], Awaitable[None]]


async def handle_task(task: Task, *, directory: PayeeDirectory,
                      extra_fields: frozenset[str] = frozenset(),
                      publish: Publish | None = None) -> dict[str, Any]:
    """Enrich the stored message; an advice over a stage's budget (reference data beyond
    intake's allowance) is rejected with the stage and limit, never left to fail.

    With ``publish``, the advice goes to the topic before the task is answered (the
    workflow has no Publish state). A failed publish fails the attempt (transient, so
    retried); a publish whose attempt then fails or is re-run is published again by the
    next attempt, which the notification intake absorbs: one job per ``request_id``
    (``tests/services/notification/test_notification.py::test_duplicate_advice_sends_one_email``).
    """
    payload = task.payload   # from the task message when the starter inlined it
    message = PartnerNotification.model_validate_json(payload)
    advice = await enrich(message, directory=directory, extra_fields=extra_fields)
    advice_json = advice.model_dump_json()
    sizes = advice_sizes(advice_json)
    sizes[JOB_ITEM] += utf8_size(payload)
    if task.inline_payload is not None:   # the workflow state carries it beside the result
        sizes[WORKFLOW_STATE] += escaped_size(payload)
    problem = first_problem(sizes)
    if problem:
        raise BusinessError("AdviceTooLarge", problem)
    attributes = advice.message_attributes()
    if publish is not None:
        await publish(advice_json, attributes)
    return {"advice_json": advice_json, "attributes": attributes}
