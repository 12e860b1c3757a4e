"""Notification business: choose a template by rules, render it, deliver it exactly once.

Exactly-once towards the payee rests on the job item, not on the workflow:
- a delivery is recorded on the item (``delivery_id``, conditioned on version)
  before the workflow is answered, and checked before anything is sent, so a
  retry or a re-drive of a delivered notification sends nothing;
- e-mail: SES has no idempotency token, so the intent is recorded first, the send
  runs once with SDK retries off, and the MessageId is recorded after. An SES
  answer is read for what it proves (:func:`ses_outcome`): only a refusal (4xx:
  throttling, rejected message, unverified identity) proves nothing was sent; a
  5xx, a timeout or a lost connection may come after SES accepted the message.
  An unknown outcome is never resent by default: the job goes ``FAILED`` with
  ``failure_reason = outcome_unknown`` until an operator settles it
  (``shared/operations/resolve.py``); with ``email_unknown_outcome=resend`` it is
  resent after ``email_resend_after_s`` (at-least-once, a possible duplicate);
- webhook: the ``webhook-id`` is a function of the request id, the same on every
  retry, so a receiver deduplicates the one case we cannot close (a crash after
  the receiver said 2xx and before the delivery was recorded). Every attempt is
  recorded in the endpoint's health (``services/notification/endpoints.py``); a
  notification for a disabled endpoint is not sent: it waits ``FAILED`` with
  ``waiting_endpoint`` until an operator enables the endpoint.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import ValidationError

from services.notification.endpoints import EndpointHealth, EndpointState, endpoint_id
from services.notification.endpoints_api import REASON as ENDPOINT_DISABLED
from services.notification.endpoints_api import WAITING
from services.notification.pools import HostPools
from services.notification.render import Renderer, RenderError
from services.notification.rules import RuleSet
from services.notification.ses_events import AWAITING, intent_value, message_tags
from services.notification.webhook import deliver, webhook_id_for
from shared.aws.clients import error_code
from shared.domain.advice import RemittanceAdvice
from shared.domain.directory import PayeeDirectory
from shared.logs import get_logger
from shared.metrics import DELIVERIES
from shared.pipeline.errors import BusinessError, TransientError
from shared.pipeline.faults import fault_point
from shared.pipeline.intake import InvalidMessage, Parsed
from shared.pipeline.jobs import Job, JobStore, Status, VersionConflict, content_hash, now_iso
from shared.pipeline.tasks import Superseded, Task
from shared.tracing import SpanKind, set_attributes, span

if TYPE_CHECKING:
    from types_aiobotocore_ses import SESClient

log = get_logger(__name__)
_THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException",
              "LimitExceeded", "LimitExceededException"}
_SERVER_SIDE = {"InternalFailure", "InternalError", "ServiceUnavailable",
                "ServiceUnavailableException"}
INTENT = "delivery_intent"
SesOutcome = Literal["throttled", "refused", "unknown"]


def ses_outcome(exc: BaseException) -> SesOutcome:
    """What an SES failure proves about the message.

    ``throttled`` and ``refused`` are 4xx answers: SES looked at the request and
    did not accept it, so nothing was sent (retry later / give up). Anything else
    (a 5xx such as ``InternalFailure`` or ``ServiceUnavailable``, a timeout, a
    connection reset, no answer at all) is ``unknown``: SES may have accepted the
    message before the failure reached us.
    """
    code = error_code(exc)
    if not code:
        return "unknown"
    response = getattr(exc, "response", None) or {}
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if status >= 500 or code in _SERVER_SIDE:
        return "unknown"
    if code in _THROTTLED:
        return "throttled"
    return "refused"


def _intent_age_s(intent: object) -> float:
    """Seconds since the intent ``email@<iso time>[#attempt]`` was recorded (0 when
    unreadable)."""
    try:
        stamp = str(intent).split("@", 1)[1].partition("#")[0]
        when = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (IndexError, ValueError):
        return 0.0
    return (dt.datetime.now(dt.UTC) - when).total_seconds()


def _endpoint_id(url: str) -> str | None:
    try:
        return endpoint_id(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None     # deliver() refuses it with the reason


def parse_advice(body: str) -> Parsed:
    """Intake parser for advices arriving from the topic (raw delivery)."""
    try:
        data = json.loads(body)
        advice = RemittanceAdvice.model_validate(data)
    except ValueError as exc:
        reason = "schema" if isinstance(exc, ValidationError) else "invalid_json"
        raise InvalidMessage(reason, str(exc)[:1000]) from exc
    # The same advice published twice (at-least-once upstream) may differ only in
    # when it was enriched: that is the same content.
    stable = {k: v for k, v in data.items() if k != "enriched_at"}
    return Parsed(request_id=advice.request_id, payload=body, content_hash=content_hash(stable),
                  extra={"channel": advice.payee.channel, "partner": advice.partner})


@dataclass
class Notifier:
    store: JobStore
    rules: RuleSet
    renderer: Renderer
    ses: SESClient
    http: HostPools
    directory: PayeeDirectory
    sender: str
    webhook_timeout_s: float = 10.0
    allow_private: bool = False
    unknown_outcome: Literal["fail", "resend"] = "fail"
    resend_after_s: float = 900.0
    endpoints: EndpointHealth | None = None
    configuration_set: str | None = None
    ses_event_window_s: float = 0.0
    # the task worker's stop: a quick webhook retry waits no longer than it
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, task: Task) -> dict[str, Any]:
        job = task.job
        if job.raw.get("delivery_id"):
            log.info("notify.already_delivered", request_id=job.request_id)
            return {"delivery_id": job.raw["delivery_id"]}
        if job.raw.get(INTENT):
            if self.unknown_outcome == "fail":
                return {"delivery_id": await self._unknown_outcome(
                    job, "an e-mail send was started earlier and its outcome is unknown; "
                    "not resent automatically")}
            age = _intent_age_s(job.raw[INTENT])
            wait_s = max(self.resend_after_s, self._event_window_s(job))
            if age < wait_s:
                raise TransientError(f"e-mail outcome unknown; resend allowed in "
                                     f"{wait_s - age:.0f}s unless an SES event settles it "
                                     "(at-least-once)")
            job = await self.store.update(job, {}, remove=(INTENT,),
                                          history="e-mail outcome still unknown after "
                                          f"{age:.0f}s: resending (at-least-once)")
        advice = RemittanceAdvice.model_validate_json(job.raw["payload"])
        with span("rule", request_id=job.request_id) as rule_span:
            choice = self.rules.choose(advice)
            rule_span.set_attribute("rule", choice.rule_name)
        channel = choice.channel
        with span("render", request_id=job.request_id, template_id=choice.template_id):
            try:
                rendered = self.renderer.render(advice, template_id=choice.template_id,
                                                locale=advice.payee.locale)
            except RenderError as exc:
                raise BusinessError("RenderFailed", str(exc)) from exc
        details = {"channel": channel, "template_id": rendered.template_id,
                   "locale": rendered.locale_used, "rule": choice.rule_name}
        # the payee's webhook request carries this span's traceparent
        with span("deliver", kind=SpanKind.CLIENT, request_id=job.request_id,
                  attempt=task.attempt, channel=channel):
            if channel == "email":
                delivery_id = await self._email(job, advice, rendered, details)
            else:
                delivery_id = await self._webhook(job, advice, details)
            set_attributes(outcome="delivered")
        return {"delivery_id": delivery_id}

    async def _email(self, job: Job, advice: RemittanceAdvice, rendered: Any,
                     details: dict[str, Any]) -> str:
        if not advice.payee.email:
            raise BusinessError("NoAddress", "payee has no e-mail address")
        job = await self.store.update(job, {**details, INTENT: intent_value(job.attempt)})
        fault_point("notify.before_send")
        extra: dict[str, Any] = {}
        if self.configuration_set:     # SES events settle an unknown outcome (ses_events.py)
            extra = {"ConfigurationSetName": self.configuration_set,
                     "Tags": message_tags(job.request_id, job.attempt)}
        try:
            resp = await self.ses.send_email(
                Source=self.sender, Destination={"ToAddresses": [advice.payee.email]},
                Message={"Subject": {"Data": rendered.subject, "Charset": "UTF-8"},
                         "Body": {"Text": {"Data": rendered.text, "Charset": "UTF-8"},
                                  "Html": {"Data": rendered.html, "Charset": "UTF-8"}}},
                **extra)
        except Exception as exc:
            outcome = ses_outcome(exc)
            code = error_code(exc)
            if outcome != "unknown":  # SES refused: nothing was sent, the intent can go
                await self.store.update(job, {}, remove=(INTENT,))
                DELIVERIES.labels(channel="email", outcome="error").inc()
                if outcome == "throttled":
                    raise TransientError(f"SES {code}") from exc
                raise BusinessError("EmailRejected", f"SES {code}: {exc}") from exc
            DELIVERIES.labels(channel="email", outcome="unknown").inc()
            reason = f"SES send outcome unknown ({code or type(exc).__name__})"
            if self.unknown_outcome == "resend":
                raise TransientError(reason + "; resent later (at-least-once)") from exc
            return await self._unknown_outcome(job, reason)
        message_id = resp["MessageId"]
        fault_point("notify.after_send")
        try:
            await self.store.update(job, {"delivery_id": message_id, "delivered_at": now_iso()},
                                    remove=("delivery_intent",))
        except VersionConflict:
            # SES's event for this very send can arrive before our record and settle the
            # job first (ses_events.py): that write is our outcome, not a lost race.
            if settled_by_event(await self.store.require(job.request_id),
                                job.attempt) != message_id:
                raise
            log.info("notify.settled_by_ses_event", request_id=job.request_id,
                     message_id=message_id)
        DELIVERIES.labels(channel="email", outcome="delivered").inc()
        log.info("notify.emailed", request_id=job.request_id, message_id=message_id)
        return str(message_id)

    async def _webhook(self, job: Job, advice: RemittanceAdvice, details: dict[str, Any]) -> str:
        payee = await self.directory.payee(advice.payee.payee_id)
        if payee is None or not payee.webhook_url or not payee.webhook_secret:
            raise BusinessError("NoWebhook", "payee has no webhook_url/webhook_secret")
        msg_id = webhook_id_for(job.request_id)
        eid = _endpoint_id(payee.webhook_url)
        if self.endpoints is not None and eid is not None:
            known = await self.endpoints.get(eid)
            if known is not None and known.disabled:
                await self._wait_for_endpoint(job, eid, "endpoint disabled since "
                                              f"{known.raw.get('disabled_at')}; not sent")
        job = await self.store.update(job, {**details, "webhook_id": msg_id})
        result = await deliver(self.http, url=payee.webhook_url, secret=payee.webhook_secret,
                               msg_id=msg_id, payload=json.loads(advice.model_dump_json()),
                               timeout_s=self.webhook_timeout_s,
                               allow_private=self.allow_private, stop=self.stop)
        DELIVERIES.labels(channel="webhook", outcome=result.outcome).inc()
        set_attributes(outcome=result.outcome, http__response__status_code=result.status_code,
                       delivery_attempts=result.attempts)
        health = None
        if result.outcome != "delivered" and result.attempts:
            health = await self._record(payee.webhook_url, ok=False, reason=result.detail)
        if result.outcome == "delivered":
            fault_point("notify.after_send")
            await self.store.update(job, {"delivery_id": msg_id, "delivered_at": now_iso(),
                                          "http_status": result.status_code})
            await self._record(payee.webhook_url, ok=True)
            log.info("notify.webhook_delivered", request_id=job.request_id, webhook_id=msg_id,
                     status=result.status_code)
            return msg_id
        if result.outcome == "gone":
            raise BusinessError("WebhookGone", f"receiver answered 410 Gone: {result.detail}")
        if result.outcome == "business":
            raise BusinessError("WebhookRejected", result.detail)
        if health is not None and health.disabled and eid is not None:
            await self._wait_for_endpoint(job, eid, f"endpoint disabled after failing for "
                                          f"{health.failing_s:.0f}s: {result.detail}")
        raise TransientError(f"webhook: {result.detail}")

    async def _record(self, url: str, *, ok: bool,
                      reason: str | None = None) -> EndpointState | None:
        """Endpoint health is advice: a failed write is logged, never fails the delivery."""
        if self.endpoints is None:
            return None
        try:
            return await self.endpoints.record(url, ok=ok, reason=reason)
        except Exception as exc:
            log.warning("notify.endpoint_health_failed", error=repr(exc))
            return None

    async def _wait_for_endpoint(self, job: Job, eid: str, reason: str) -> None:
        """Park the job (``FAILED``, ``waiting_endpoint``) until the endpoint is enabled."""
        current = await self.store.require(job.request_id)
        if current.status is Status.RUNNING:
            await self.store.transition(
                current, Status.FAILED,
                set_={"last_error": reason, "failure_reason": ENDPOINT_DISABLED, WAITING: eid},
                history=f"attempt {current.attempt}: {reason}; waiting for endpoint {eid} "
                        "to be enabled")
        log.warning("notify.waiting_endpoint", request_id=job.request_id, endpoint=eid)
        raise Superseded(reason)

    def _event_window_s(self, job: Job) -> float:
        """How long an in-doubt send waits for its SES event (0 when none can come)."""
        if not self.configuration_set or not message_tags(job.request_id, job.attempt):
            return 0.0
        return self.ses_event_window_s

    async def _unknown_outcome(self, job: Job, reason: str) -> str:
        """Park an in-doubt send ``FAILED`` (``outcome_unknown``) and raise ``Superseded``,
        unless SES's event already settled this attempt: then its delivery id is returned
        (the outcome is known: sent). A write that loses to the event re-reads."""
        for _ in range(3):
            current = await self.store.require(job.request_id)
            settled = settled_by_event(current, job.attempt)
            if settled is not None:
                log.info("notify.settled_by_ses_event", request_id=job.request_id,
                         message_id=settled)
                return settled
            if current.status is not Status.RUNNING:
                break
            window = self._event_window_s(current)
            marker: dict[str, Any] = {}
            waits = "waiting for an operator (resolve sent / not_sent)"
            if window > 0:
                until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=window)
                marker = {AWAITING: until.isoformat(timespec="seconds").replace("+00:00", "Z")}
                waits = (f"waiting for its SES event until {marker[AWAITING]}, then for an "
                         "operator (resolve sent / not_sent)")
            try:
                await self.store.transition(
                    current, Status.FAILED,
                    set_={"last_error": reason, "failure_reason": "outcome_unknown", **marker},
                    history=f"attempt {current.attempt}: {reason}; {waits}")
                break
            except VersionConflict:
                continue     # an SES event (or an operator) wrote first: re-decide
        log.error("notify.outcome_unknown", request_id=job.request_id, reason=reason)
        raise Superseded(reason)


def settled_by_event(current: Job, attempt: int) -> str | None:
    """The delivery id SES's event recorded for ``attempt``'s send, if one did
    (``delivery_id`` set and the in-doubt marker cleared by ``ses_events.py``)."""
    if current.attempt == attempt and current.raw.get("delivery_id") \
            and not current.raw.get(INTENT):
        return str(current.raw["delivery_id"])
    return None
