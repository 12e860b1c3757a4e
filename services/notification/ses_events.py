"""SES sending events settle e-mails whose send outcome is unknown.

Every e-mail goes through the configuration set ``<prefix>-ses-events`` and carries
the message tags ``request_id`` and ``attempt``; the set's event destination
publishes SES's sending events to the topic of the same name, whose queue this
worker consumes. What each event proves, for the attempt its tags name:

* ``Send`` (SES accepted the message; also ``Delivery``, ``Bounce``, ``Complaint``,
  ``DeliveryDelay``, which follow acceptance): the e-mail was sent. The job gets
  ``delivery_id`` = SES's message id and its in-doubt marker goes; a ``FAILED`` job
  (outcome unknown) becomes ``SENT``; a ``RUNNING`` one finishes as ``SENT`` when its
  task is answered (the handler sees the recorded delivery and sends nothing), and so
  does a ``RETRY_PENDING`` one (its process died after SES accepted) when re-driven.
* ``Reject`` or ``RenderingFailure``: SES did not send it. The in-doubt marker goes;
  a ``FAILED`` job is re-driven as a fresh attempt, which sends once more.

Guarantees: an event is applied only to the attempt it names, only while that
attempt's send is still in doubt (``delivery_intent`` set, naming the attempt: the
marker outlives a re-drive, which does not resend), with a version-conditioned write
(a lost race re-reads and re-decides); anything else (a stale attempt, a settled job,
a duplicate) is acknowledged and counted. A message that is not an SES event goes to the DLQ with a
reason, except SES's own plain-text topic-validation notice (published once when
the event destination is created), which is acknowledged and counted. A DynamoDB
failure leaves the message to come back. Only when no event arrives within
``REMITFLOW_SES_EVENT_WINDOW_S`` does an e-mail fall back to the unknown-outcome
policy (``services/notification/handler.py``).

Request ids outside SES's tag alphabet (letters, digits, ``_ - . @``) cannot be
tagged; their e-mails carry no tags and keep the unknown-outcome policy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import Counter

from shared.aws.sqs import EventQueueWorker, NotAnEvent
from shared.logs import get_logger
from shared.pipeline.jobs import Job, JobStore, Status, VersionConflict, now_iso
from shared.pipeline.starter import WorkflowStarter
from shared.schedule import Schedule

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = get_logger(__name__)
INTENT = "delivery_intent"
AWAITING = "awaiting_ses_event_until"
SENT_EVENTS = frozenset({"Send", "Delivery", "Bounce", "Complaint", "DeliveryDelay"})
NOT_SENT_EVENTS = frozenset({"Reject", "RenderingFailure"})
# SES's documented event types: the only values the metric's ``event`` label takes
# (anything else counts as ``other``), so whoever can publish to the queue cannot
# mint label values.
KNOWN_EVENTS = SENT_EVENTS | NOT_SENT_EVENTS | frozenset({"Open", "Click", "Subscription"})
# What SES (AWS and LocalStack alike) publishes to the topic once, when the event
# destination is created: not an event, not invalid either.
VALIDATION_MESSAGE = "Successfully validated SNS topic for Amazon SES event publishing."
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_.@-]{1,256}$")

SES_EVENTS = Counter("remitflow_ses_events_total",
                     "SES sending events read, by event type and what they did.",
                     ["event", "outcome"])


class NotAnSesEvent(NotAnEvent):
    """The message is not an SES sending event we can read."""


def message_tags(request_id: str, attempt: int) -> list[dict[str, str]]:
    """SES message tags naming one attempt (empty when the id cannot be a tag value)."""
    if not _TAG_VALUE.match(request_id):
        return []
    return [{"Name": "request_id", "Value": request_id}, {"Name": "attempt", "Value": str(attempt)}]


def intent_value(attempt: int) -> str:
    """The in-doubt marker an attempt writes before it sends: ``email@<time>#<attempt>``."""
    return f"email@{now_iso()}#{attempt}"


def intent_attempt(job: Job) -> int:
    """The attempt whose send the job's in-doubt marker belongs to. It outlives its
    attempt (a re-drive does not resend an e-mail in doubt), so an event for that
    attempt still settles the job after the re-drive. Older markers name no attempt:
    the job's current one."""
    _, _, attempt = str(job.raw.get(INTENT, "")).rpartition("#")
    return int(attempt) if attempt.isdigit() else job.attempt


def is_validation_message(body: str) -> bool:
    """SES's topic-validation notice, raw or in an SNS envelope (exact text only)."""
    text = body.strip()
    if text.startswith("{"):
        try:
            envelope = json.loads(text)
        except ValueError:
            return False
        if not isinstance(envelope, dict) or "Type" not in envelope:
            return False
        text = str(envelope.get("Message", "")).strip()
    return text == VALIDATION_MESSAGE


def event_label(event_type: str) -> str:
    """The metric label for an event type: SES's own names, ``other`` for the rest."""
    return event_type if event_type in KNOWN_EVENTS else "other"


@dataclass(frozen=True)
class SesEvent:
    event_type: str
    message_id: str
    request_id: str | None
    attempt: int | None

    @classmethod
    def parse(cls, body: str) -> SesEvent:
        """SES's event JSON (raw delivery), or an SNS envelope around it."""
        try:
            event = json.loads(body)
            if "Message" in event and "Type" in event:      # SNS envelope, not raw
                event = json.loads(event["Message"])
            kind = event.get("eventType") or event.get("notificationType")
            mail = event["mail"]
            if not kind:
                raise NotAnSesEvent("no eventType")
            tags: dict[str, list[str]] = mail.get("tags") or {}
            rid = next(iter(tags.get("request_id") or []), None)
            attempt = next(iter(tags.get("attempt") or []), None)
            return cls(event_type=str(kind), message_id=str(mail["messageId"]),
                       request_id=str(rid) if rid else None,
                       attempt=int(attempt) if attempt is not None else None)
        except NotAnSesEvent:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise NotAnSesEvent(f"{type(exc).__name__}: {exc}"[:300]) from exc


class SesEvents(EventQueueWorker):
    """Consumes ``<prefix>-ses-events`` for the notification job table."""

    def __init__(self, *, sqs: SQSClient, queue_name: str, queue_url: str, dlq_url: str,
                 store: JobStore, starter: WorkflowStarter, max_in_flight: int = 10,
                 wait_s: int = 10, visibility_s: int = 60,
                 backoff: Schedule | None = None) -> None:
        super().__init__(sqs, queue_name, queue_url, dlq_url=dlq_url, worker="ses_events",
                         max_in_flight=max_in_flight, wait_s=wait_s, visibility_s=visibility_s,
                         backoff=backoff)
        self.store, self.starter = store, starter

    async def handle(self, body: str) -> str:
        """Apply one event; returns what it did (sent, not_sent, stale, unknown, ignored,
        validation)."""
        if is_validation_message(body):
            SES_EVENTS.labels(event="-", outcome="validation").inc()
            log.info("ses_events.topic_validated", queue=self.queue)
            return "validation"
        event = SesEvent.parse(body)
        for _ in range(3):   # a lost race (the handler wrote first) re-reads and re-decides
            try:
                outcome = await self._apply(event)
                break
            except VersionConflict:
                continue
        else:
            raise VersionConflict(event.request_id or "-")   # deferred: comes back later
        SES_EVENTS.labels(event=event_label(event.event_type), outcome=outcome).inc()
        log.info("ses_events.event", request_id=event.request_id,
                 ses_event=event.event_type[:64], ses_message_id=event.message_id,
                 attempt=event.attempt, outcome=outcome)
        return outcome

    async def _apply(self, event: SesEvent) -> str:
        if event.event_type not in SENT_EVENTS | NOT_SENT_EVENTS:
            return "ignored"     # Open, Click, Subscription: nothing to settle
        if event.request_id is None or event.attempt is None:
            return "unknown"
        job = await self.store.get(event.request_id)
        if job is None:
            return "unknown"
        # RETRY_PENDING too: the attempt's task timed out (its process died after SES
        # accepted) and a re-drive is due; recording the delivery now means the
        # re-driven attempt finds it and sends nothing.
        if not job.raw.get(INTENT) or intent_attempt(job) != event.attempt \
                or job.status not in (Status.RUNNING, Status.FAILED, Status.RETRY_PENDING):
            return "stale"
        note = f"SES {event.event_type} event for attempt {event.attempt}"
        if event.event_type in SENT_EVENTS:
            done = {"delivery_id": event.message_id, "delivered_at": now_iso()}
            if job.status is Status.FAILED:
                await self.store.transition(job, self.store.success, set_=done,
                                            remove=(INTENT, AWAITING, "failure_reason"),
                                            history=f"{note}: sent ({event.message_id})")
            else:
                await self.store.update(job, done, remove=(INTENT, AWAITING),
                                        history=f"{note}: sent ({event.message_id})")
            return "sent"
        cleared = await self.store.update(job, {}, remove=(INTENT, AWAITING,
                                                           "failure_reason"),
                                          history=f"{note}: not sent")
        if cleared.status is Status.FAILED:
            await self.starter.begin(cleared, history="re-driven: SES did not send "
                                     f"attempt {event.attempt}")
        return "not_sent"

    def invalid(self, detail: str) -> None:
        SES_EVENTS.labels(event="-", outcome="invalid").inc()
