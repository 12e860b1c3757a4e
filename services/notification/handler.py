"""Notification business: choose a template by rules, render it, deliver it exactly once.

Exactly-once towards the payee rests on the job item, not on the workflow:
- a delivery is recorded on the item (``delivery_id``, conditioned on version)
  before the workflow is answered, and checked before anything is sent, so a
  retry or a re-drive of a delivered notification sends nothing;
- e-mail: SES has no idempotency token, so the intent is recorded first, the send
  runs once with SDK retries off, and the MessageId is recorded after. An intent
  found without a MessageId means a send whose outcome is unknown: it is never
  resent automatically; the job goes to ``FAILED`` for a human to look at;
- webhook: the ``webhook-id`` is a function of the request id, the same on every
  retry, so a receiver deduplicates the one case we cannot close (a crash after
  the receiver said 2xx and before the delivery was recorded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from services.notification.render import Renderer, RenderError
from services.notification.rules import RuleSet
from services.notification.webhook import deliver, webhook_id_for
from shared.aws.clients import error_code
from shared.domain.advice import RemittanceAdvice
from shared.domain.directory import PayeeDirectory
from shared.logs import get_logger
from shared.metrics import DELIVERIES
from shared.pipeline.intake import InvalidMessage, Parsed
from shared.pipeline.jobs import Job, JobStore, Status, content_hash, now_iso
from shared.pipeline.tasks import BusinessError, Superseded, Task, TransientError
from shared.worker import fault_point

if TYPE_CHECKING:
    from types_aiobotocore_ses import SESClient

log = get_logger(__name__)
_THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException",
              "ServiceUnavailable", "InternalFailure"}


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
    http: httpx.AsyncClient
    directory: PayeeDirectory
    sender: str
    webhook_timeout_s: float = 10.0
    allow_private: bool = False

    async def handle(self, task: Task) -> dict[str, Any]:
        job = task.job
        if job.raw.get("delivery_id"):
            log.info("notify.already_delivered", request_id=job.request_id)
            return {"delivery_id": job.raw["delivery_id"]}
        if job.raw.get("delivery_intent"):
            await self._unknown_outcome(job, "an e-mail send was started earlier and its "
                                        "outcome is unknown; not resent automatically")
        advice = RemittanceAdvice.model_validate_json(job.raw["payload"])
        choice = self.rules.choose(advice)
        channel = choice.channel
        try:
            rendered = self.renderer.render(advice, template_id=choice.template_id,
                                            locale=advice.payee.locale)
        except RenderError as exc:
            raise BusinessError("RenderFailed", str(exc)) from exc
        details = {"channel": channel, "template_id": rendered.template_id,
                   "locale": rendered.locale_used, "rule": choice.rule_name}
        if channel == "email":
            delivery_id = await self._email(job, advice, rendered, details)
        else:
            delivery_id = await self._webhook(job, advice, details)
        return {"delivery_id": delivery_id}

    async def _email(self, job: Job, advice: RemittanceAdvice, rendered: Any,
                     details: dict[str, Any]) -> str:
        if not advice.payee.email:
            raise BusinessError("NoAddress", "payee has no e-mail address")
        job = await self.store.update(job, {**details, "delivery_intent": f"email@{now_iso()}"})
        fault_point("notify.before_send")
        try:
            resp = await self.ses.send_email(
                Source=self.sender, Destination={"ToAddresses": [advice.payee.email]},
                Message={"Subject": {"Data": rendered.subject, "Charset": "UTF-8"},
                         "Body": {"Text": {"Data": rendered.text, "Charset": "UTF-8"},
                                  "Html": {"Data": rendered.html, "Charset": "UTF-8"}}})
        except Exception as exc:
            code = error_code(exc)
            if code:  # SES answered: nothing was sent, the intent can go
                await self.store.update(job, {}, remove=("delivery_intent",))
                DELIVERIES.labels(channel="email", outcome="error").inc()
                if code in _THROTTLED:
                    raise TransientError(f"SES {code}") from exc
                raise BusinessError("EmailRejected", f"SES {code}: {exc}") from exc
            DELIVERIES.labels(channel="email", outcome="unknown").inc()
            await self._unknown_outcome(job, f"SES send outcome unknown ({type(exc).__name__})")
            raise
        message_id = resp["MessageId"]
        fault_point("notify.after_send")
        await self.store.update(job, {"delivery_id": message_id, "delivered_at": now_iso()},
                                remove=("delivery_intent",))
        DELIVERIES.labels(channel="email", outcome="delivered").inc()
        log.info("notify.emailed", request_id=job.request_id, message_id=message_id)
        return str(message_id)

    async def _webhook(self, job: Job, advice: RemittanceAdvice, details: dict[str, Any]) -> str:
        payee = await self.directory.payee(advice.payee.payee_id)
        if payee is None or not payee.webhook_url or not payee.webhook_secret:
            raise BusinessError("NoWebhook", "payee has no webhook_url/webhook_secret")
        msg_id = webhook_id_for(job.request_id)
        job = await self.store.update(job, {**details, "webhook_id": msg_id})
        result = await deliver(self.http, url=payee.webhook_url, secret=payee.webhook_secret,
                               msg_id=msg_id, payload=json.loads(advice.model_dump_json()),
                               timeout_s=self.webhook_timeout_s,
                               allow_private=self.allow_private)
        DELIVERIES.labels(channel="webhook", outcome=result.outcome).inc()
        if result.outcome == "delivered":
            fault_point("notify.after_send")
            await self.store.update(job, {"delivery_id": msg_id, "delivered_at": now_iso(),
                                          "http_status": result.status_code})
            log.info("notify.webhook_delivered", request_id=job.request_id, webhook_id=msg_id,
                     status=result.status_code)
            return msg_id
        if result.outcome == "gone":
            raise BusinessError("WebhookGone", f"receiver answered 410 Gone: {result.detail}")
        if result.outcome == "business":
            raise BusinessError("WebhookRejected", result.detail)
        raise TransientError(f"webhook: {result.detail}")

    async def _unknown_outcome(self, job: Job, reason: str) -> None:
        current = await self.store.require(job.request_id)
        if current.status is Status.RUNNING:
            await self.store.transition(current, Status.FAILED, set_={"last_error": reason},
                                        history="send outcome unknown")
        log.error("notify.outcome_unknown", request_id=job.request_id, reason=reason)
        raise Superseded(reason)
