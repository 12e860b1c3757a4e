"""Intake: SQS long-poll consumer that turns messages into job items.

Guarantees:
- At-least-once in: a message is deleted only after its job item is durable
  (conditional ``PutItem``) or it has been moved to the DLQ.
- A redelivered message with the same content is acknowledged without a second
  job; the same id with different content is quarantined (DLQ, reason
  ``conflicting_duplicate``) and the stored item is left untouched.
- An invalid message is never retried: it goes to the DLQ with the reason in its
  message attributes, is deleted from the source, and is counted. Neighbours in
  the batch are unaffected.
- At most ``max_in_flight`` messages are being handled at once; visibility is
  extended while a batch is still being handled; on shutdown, messages received
  but not started are handed back (visibility 0).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from shared.aws.sqs import SqsWorker
from shared.logs import get_logger
from shared.metrics import DLQ_MESSAGES, INTAKE_MESSAGES, MESSAGE_AGE, WORKER_ERRORS
from shared.pipeline.jobs import JobStore
from shared.worker import fault_point

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

log = get_logger(__name__)

# DynamoDB's item limit is 400 KB; keep room for the job's own attributes.
MAX_PAYLOAD_BYTES = 380_000


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


Parser = Callable[[str], Parsed]

#: What :func:`store_parsed` did with a message.
StoreOutcome = Literal["stored", "duplicate", "conflict"]


def conflict_detail(request_id: str) -> str:
    return (f"request_id {request_id} already stored with different content; "
            "stored item left untouched")


async def store_parsed(store: JobStore, parsed: Parsed) -> StoreOutcome:
    """Store one parsed message as a job: the intake rule every source shares.

    A conditional ``PutItem`` creates the job (``stored``); when the id exists,
    the same content hash is a redelivery (``duplicate``, nothing written) and a
    different one is a ``conflict`` (nothing written; the caller quarantines).
    Used by the SQS intake below and by file intakes, so both apply one rule.

    Raises:
        InvalidMessage: ``too_large`` when the payload cannot fit a job item.
    """
    if len(parsed.payload.encode()) > MAX_PAYLOAD_BYTES:
        raise InvalidMessage("too_large", f"payload of {len(parsed.payload)} bytes is "
                             f"over the {MAX_PAYLOAD_BYTES} byte limit for a job item")
    created = await store.create(parsed.request_id, parsed.payload, parsed.content_hash,
                                 parsed.extra)
    fault_point("intake.after_put")
    if created is not None:
        return "stored"
    existing = await store.get(parsed.request_id)
    if existing is not None and existing.raw.get("payload_sha256") == parsed.content_hash:
        return "duplicate"
    return "conflict"


class Intake(SqsWorker):
    """One intake queue → one job table."""

    def __init__(self, *, sqs: SQSClient, queue_name: str, queue_url: str, dlq_url: str,
                 store: JobStore, parse: Parser, max_in_flight: int = 32,
                 wait_s: int = 10, visibility_s: int = 60) -> None:
        super().__init__(sqs, queue_name, queue_url, worker="intake",
                         max_in_flight=max_in_flight, wait_s=wait_s,
                         visibility_s=visibility_s, with_attributes=True)
        self.dlq_url = dlq_url
        self.store = store
        self.parse = parse

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
        for m, ok in zip(messages, results, strict=True):
            if isinstance(ok, BaseException):
                WORKER_ERRORS.labels(worker="intake").inc()
                log.error("intake.handle_failed", queue=self.queue,
                          message_id=m.get("MessageId"), error=repr(ok))
        await self.deleter.delete_many(done)

    async def _handle(self, message: MessageTypeDef) -> bool:
        """Returns True when the message may be deleted from the source queue."""
        body = message.get("Body", "")
        sent = message.get("Attributes", {}).get("SentTimestamp")
        if sent:
            MESSAGE_AGE.labels(queue=self.queue).observe(max(0.0, time.time() - int(sent) / 1000))
        try:
            parsed = self.parse(body)
            outcome = await store_parsed(self.store, parsed)
        except InvalidMessage as exc:
            await self._quarantine(message, exc.reason, exc.detail)
            INTAKE_MESSAGES.labels(queue=self.queue, outcome="invalid").inc()
            return True
        label: str = outcome
        if outcome == "conflict":
            await self._quarantine(message, "conflicting_duplicate",
                                   conflict_detail(parsed.request_id),
                                   request_id=parsed.request_id)
            label = "quarantined"
        INTAKE_MESSAGES.labels(queue=self.queue, outcome=label).inc()
        if label != "quarantined":
            log.info(f"intake.{label}", request_id=parsed.request_id, queue=self.queue)
        return True

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
