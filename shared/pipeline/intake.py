"""Intake: SQS long-poll consumer that turns messages into job items.

Guarantees:
- At-least-once in: a message is deleted only after its job item is durable
  (conditional ``PutItem``) or it has been moved to the DLQ.
- A redelivered message with the same content is acknowledged without a second
  job; the same id with different content is quarantined (DLQ, reason
  ``conflicting_duplicate``) and the stored item is left untouched.
- An invalid message is never retried: it goes to the DLQ with the reason in its
  message attributes, is deleted from the source, and is counted. Neighbours in
  the batch are unaffected. Whatever the parser raises counts as invalid (a parser
  is a pure function of the body, so a retry would fail the same way): a body
  nested too deep for the decoder (``RecursionError``) is ``too_deep``, any other
  decode failure ``undecodable``.
- The DLQ means "read the reason": only messages judged invalid go there. A valid
  message that cannot be stored now (DynamoDB throttling, 5xx, timeouts) is hidden
  again with a growing delay (``ChangeMessageVisibility``: base * 2^(receives-1),
  jittered, capped) and retried; the queue's own redrive limit is set far beyond
  any outage the backoff covers (``shared/provision/primitives.py``).
- At most ``max_in_flight`` messages are being handled at once; visibility is
  extended while a batch is still being handled; on shutdown, messages received
  but not started are handed back (visibility 0).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from shared.aws.sqs import SqsWorker
from shared.logs import get_logger
from shared.metrics import DLQ_MESSAGES, INTAKE_MESSAGES, MESSAGE_AGE, WORKER_ERRORS
from shared.pipeline.budgets import JOB_ITEM, Budget, first_problem, utf8_size
from shared.pipeline.faults import fault_point
from shared.pipeline.jobs import JobStore
from shared.schedule import Schedule
from shared.tracing import (
    TRACEPARENT,
    SpanKind,
    exemplar,
    message_traceparent,
    set_attributes,
    span,
    traceparent,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

log = get_logger(__name__)

# The payload alone must fit the job item's budget (what the job adds is on top).
MAX_PAYLOAD_BYTES = JOB_ITEM.usable


class InvalidMessage(ValueError):
    """A message that no retry can fix. ``reason`` is a short, bounded code for metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Parsed:
    """What a service's parser makes of one message body."""

    request_id: str
    payload: str
    content_hash: str
    extra: dict[str, Any] = field(default_factory=dict)
    sizes: dict[Budget, int] = field(default_factory=dict)
    """What this job will carry downstream, per stage (``shared/pipeline/budgets.py``),
    measured by the service that knows its output; for ``JOB_ITEM``, the bytes the
    job's output adds to its item (the payload is counted here)."""


Parser = Callable[[str], Parsed]

#: What :func:`store_parsed` did with a message.
StoreOutcome = Literal["stored", "duplicate", "conflict"]


def conflict_detail(request_id: str) -> str:
    return (f"request_id {request_id} already stored with different content; "
            "stored item left untouched")


async def store_parsed(store: JobStore, parsed: Parsed) -> StoreOutcome:
    """Store one parsed message as a job: the intake rule every source shares.

    A conditional ``PutItem`` creates the job (``stored``); when the id exists, or
    its job expired and left a tombstone (``shared/pipeline/lifecycle.py``),
    the same content hash is a redelivery (``duplicate``, nothing written) and a
    different one is a ``conflict`` (nothing written; the caller quarantines).
    Used by the SQS intake below and by file intakes, so both apply one rule.

    Raises:
        InvalidMessage: ``too_large`` when the job would not fit a stage downstream
            (``shared/pipeline/budgets.py``: item, task output, workflow state, topic).
    """
    problem = budget_problem(parsed)
    if problem:
        raise InvalidMessage("too_large", problem)
    if store.tombstones is not None:
        # an expired job's tombstone: the same rule, after the job itself is gone
        stone = await store.tombstones.get(store.table, parsed.request_id)
        if stone is not None:
            return "duplicate" if stone.get("payload_sha256") == parsed.content_hash \
                else "conflict"
    created = await store.create(parsed.request_id, parsed.payload, parsed.content_hash,
                                 parsed.extra)
    fault_point("intake.after_put")
    if created is not None:
        return "stored"
    existing = await store.get(parsed.request_id)
    if existing is not None and existing.raw.get("payload_sha256") == parsed.content_hash:
        return "duplicate"
    return "conflict"


def budget_problem(parsed: Parsed) -> str | None:
    """Why this message would not fit downstream (stage and limit), or None."""
    sizes = {**parsed.sizes, JOB_ITEM: utf8_size(parsed.payload) + parsed.sizes.get(JOB_ITEM, 0)}
    return first_problem(sizes)


class Intake(SqsWorker):
    """One intake queue → one job table."""

    def __init__(self, *, sqs: SQSClient, queue_name: str, queue_url: str, dlq_url: str,
                 store: JobStore, parse: Parser, max_in_flight: int = 32,
                 wait_s: int = 10, visibility_s: int = 60, retry_base_s: float = 2.0,
                 retry_cap_s: float = 900.0, continue_trace: bool = False) -> None:
        """``continue_trace``: the queue is fed by our own topic (a kind that subscribes),
        so a message's ``traceparent`` is ours to continue; otherwise it is a sender's
        and only linked."""
        super().__init__(sqs, queue_name, queue_url, worker="intake",
                         max_in_flight=max_in_flight, wait_s=wait_s,
                         visibility_s=visibility_s, with_attributes=True)
        self.dlq_url = dlq_url
        self.store = store
        self.parse = parse
        self.retry = Schedule.exponential(retry_base_s, retry_cap_s)
        self.continue_trace = continue_trace

    async def dispatch(self, messages: list[MessageTypeDef]) -> None:
        """One batch handled as a unit; acknowledged together once every message is done."""
        fault_point("intake.after_receive")
        for _ in messages:
            await self.receiver.slots.acquire()
        self.spawn(self._handle_batch(messages))

    async def _handle_batch(self, messages: list[MessageTypeDef]) -> None:
        keeper = asyncio.create_task(
            self.receiver.keep_visible(messages, every_s=self.visibility_s / 3))
        try:
            results = await asyncio.gather(*(self._handle(m) for m in messages),
                                           return_exceptions=True)
        finally:
            keeper.cancel()
            for _ in messages:
                self.receiver.slots.release()
        done = [m for m, ok in zip(messages, results, strict=True) if ok is True]
        later = [(m, ok) for m, ok in zip(messages, results, strict=True)
                 if isinstance(ok, Exception)]
        await asyncio.gather(self.deleter.delete_many(done),
                             *(self._back_off(m, exc) for m, exc in later))

    async def _back_off(self, message: MessageTypeDef, exc: Exception) -> None:
        """A valid message we could not store now: hide it for a growing delay.

        The delay grows with SQS's receive count, so a long outage costs a few
        receives per message, not a receive per visibility timeout; the message is
        never moved to the DLQ for it.
        """
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        delay = max(1, round(self.retry.delay(receives)))
        WORKER_ERRORS.labels(worker="intake").inc()
        INTAKE_MESSAGES.labels(queue=self.queue, outcome="deferred").inc()
        log.warning("intake.deferred", queue=self.queue, message_id=message.get("MessageId"),
                    receives=receives, delay_s=delay, error=repr(exc)[:300])
        await self.receiver.delay(message, delay)

    async def _handle(self, message: MessageTypeDef) -> bool:
        """Returns True when the message may be deleted from the source queue.

        One ``intake`` span per message (receive → stored). At the edge (a partner's
        queue) it is the root of a new trace of ours: the sender's ``traceparent``
        attribute is only a span link and the ``partner.traceparent`` attribute, so
        a sender picks neither our trace ids (they reach payees) nor our sampling
        (export cost). Behind our own topic (``continue_trace``) it continues the
        message's context. The job item stores the span's context (``traceparent``)
        for the hops after this one (``docs/architecture.md``, "Tracing").
        """
        given = message_traceparent(message)
        ours = given if self.continue_trace else None
        with span("intake", parent=ours, new_trace=ours is None,
                  links=[] if ours else [given], kind=SpanKind.CONSUMER,
                  partner__traceparent=None if ours else given, messaging__system="aws_sqs",
                  messaging__destination__name=self.queue,
                  messaging__message__id=message.get("MessageId"),
                  attempt=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))):
            return await self._take(message, ours)

    async def _take(self, message: MessageTypeDef, ours: str | None) -> bool:
        body = message.get("Body", "")
        sent = message.get("Attributes", {}).get("SentTimestamp")
        if sent:
            MESSAGE_AGE.labels(queue=self.queue).observe(
                max(0.0, time.time() - int(sent) / 1000), exemplar=exemplar())
        try:
            parsed = self._parse(body)
            set_attributes(request_id=parsed.request_id)
            parsed = replace(parsed, extra={**parsed.extra,
                                            TRACEPARENT: traceparent(fallback=ours)})
            outcome = await store_parsed(self.store, parsed)
        except InvalidMessage as exc:
            await self._quarantine(message, exc.reason, exc.detail)
            INTAKE_MESSAGES.labels(queue=self.queue, outcome="invalid").inc()
            set_attributes(outcome="invalid", error__type=exc.reason)
            return True
        label: str = outcome
        if outcome == "conflict":
            await self._quarantine(message, "conflicting_duplicate",
                                   conflict_detail(parsed.request_id),
                                   request_id=parsed.request_id)
            label = "quarantined"
            set_attributes(error__type="conflicting_duplicate")
        set_attributes(outcome=label)
        INTAKE_MESSAGES.labels(queue=self.queue, outcome=label).inc()
        if label != "quarantined":
            log.info(f"intake.{label}", request_id=parsed.request_id, queue=self.queue)
        return True

    def _parse(self, body: str) -> Parsed:
        """The service's parser; anything it raises makes the message invalid."""
        try:
            return self.parse(body)
        except InvalidMessage:
            raise
        except RecursionError:
            raise InvalidMessage("too_deep", "body nests deeper than the decoder allows") from None
        except Exception as exc:
            raise InvalidMessage("undecodable", f"{type(exc).__name__}: {exc}"[:500]) from exc

    async def _quarantine(self, message: MessageTypeDef, reason: str, detail: str,
                          request_id: str | None = None) -> None:
        attrs: dict[str, Any] = {
            "remitflow.reason": {"DataType": "String", "StringValue": reason},
            "remitflow.detail": {"DataType": "String", "StringValue": detail[:1024] or "-"},
            "remitflow.source_queue": {"DataType": "String", "StringValue": self.queue},
            "remitflow.source_message_id": {"DataType": "String",
                                            "StringValue": message.get("MessageId", "-")},
        }
        if request_id:
            attrs["remitflow.request_id"] = {"DataType": "String", "StringValue": request_id}
        await self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=message.get("Body") or "-",
                                    MessageAttributes=attrs)
        DLQ_MESSAGES.labels(queue=self.queue, reason=reason).inc()
        log.warning("intake.quarantined", queue=self.queue, reason=reason, detail=detail[:300],
                    request_id=request_id, message_id=message.get("MessageId"))
