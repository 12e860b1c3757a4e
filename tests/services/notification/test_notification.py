"""Notification end to end: advice → notifications table → workflow → e-mail or webhook."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

from services.enrichment.service import build as build_enrichment
from services.notification.service import build as build_notification
from services.sweeper.service import build_sweeper
from shared.aws.emulator import sent_emails
from tests.helpers import WEBHOOK_SECRET as SECRET
from tests.helpers import (
    Env,
    eventually,
    example,
    job_in,
    point_webhook_payee_at,
    running,
)
from tools.stack import KINDS
from tools.webhook_receiver import Receiver

pytestmark = pytest.mark.own_stack(
    "runs the notification workers over "
    "the whole intake and counts executions")

EXAMPLES = resources.files("shared.contracts").joinpath("examples")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET, port=0).start()
    yield r
    r.stop()


async def test_email_lands_in_ses_with_locale_formatted_amount(env: Env) -> None:
    async with running(env, build_enrichment), running(env, build_notification):
        await env.send(example("settled-eur-sepa-extra-fields.json"))
        job = await job_in(env.store("notifications"), "REQ-2026-000002", "SENT", timeout_s=45)
    assert job.raw["channel"] == "email" and job.raw["locale"].startswith("de")
    mail = next(m for m in sent_emails(env.endpoint) if m["id"] == job.raw["delivery_id"])
    assert mail["destinations"]["ToAddresses"] == ["finance@brandt.example"]
    assert mail["source"] == env.settings.sender_email
    assert "1.234,56\xa0€" in mail["body"] or "1.234,56 €" in mail["body"]
    assert "•••• 4321" in mail["body"] or "4321" in mail["body"]
    assert not {"running_job", "retry_job", "failed_job", "delivery_intent"} & set(job.raw)


async def test_webhook_is_signed_and_received_once(env: Env, receiver: Receiver) -> None:
    await point_webhook_payee_at(env, receiver)
    async with running(env, build_enrichment), running(env, build_notification):
        await env.send(example("settled-jpy-wire.json"))
        job = await job_in(env.store("notifications"), "REQ-2026-000003", "SENT", timeout_s=45)
    assert receiver.rejected == 0
    assert list(receiver.by_id.values()) == [1]
    (got,) = receiver.received
    assert got["id"] == job.raw["delivery_id"] == job.raw["webhook_id"]
    assert got["payload"]["data"]["request_id"] == "REQ-2026-000003"
    assert got["payload"]["data"]["amount"] == "150000"


async def test_webhook_410_is_rejected(env: Env, receiver: Receiver) -> None:
    await point_webhook_payee_at(env, receiver)
    receiver.script = [410] * 10
    async with running(env, build_enrichment), running(env, build_notification):
        await env.send(example("settled-jpy-wire.json"))
        job = await job_in(env.store("notifications"), "REQ-2026-000003", "REJECTED",
                           timeout_s=45)
    assert "WebhookGone" in job.raw["last_error"]
    assert receiver.received == []


async def test_webhook_503_retry_pending_then_sent_once(env: Env, receiver: Receiver) -> None:
    """A receiver down for a while: the task's quick retries and the workflow's retries
    give up (RETRY_PENDING); once it is back, the sweeper's re-drive delivers once."""
    await point_webhook_payee_at(env, receiver)
    receiver.script = [503] * 100
    sweeper = await build_sweeper(env.settings, env.clients, KINDS)
    async with running(env, build_enrichment), running(env, build_notification):
        await env.send(example("settled-jpy-wire.json"))
        job = await job_in(env.store("notifications"), "REQ-2026-000003", "RETRY_PENDING",
                           timeout_s=60)
        assert "delivery_id" not in job.raw and receiver.received == []
        receiver.script = []                      # the receiver is back
        report = await sweeper.sweep_once(now=time.time() + 3600)
        assert report.tables["notifications"].redriven == 1
        sent = await job_in(env.store("notifications"), "REQ-2026-000003", "SENT",
                            timeout_s=60)
    assert sent.attempt == 2
    assert list(receiver.by_id.values()) == [1], "delivered exactly once"
    assert receiver.received[0]["id"] == sent.raw["delivery_id"]


async def test_duplicate_advice_sends_one_email(env: Env) -> None:
    async with running(env, build_enrichment):
        await env.send(example("settled-usd-ach.json"))
        remittance = await job_in(env.store(), "REQ-2026-000001", "COMPLETED")
    advice = json.loads(remittance.raw["advice"])
    url = await env.queue_url(env.names.notification_events)
    again = dict(advice, enriched_at="2030-01-01T00:00:00Z")  # a later re-publication
    for body in (json.dumps(again), remittance.raw["advice"]):
        await env.clients.sqs.send_message(QueueUrl=url, MessageBody=body)
    async with running(env, build_notification):
        job = await job_in(env.store("notifications"), "REQ-2026-000001", "SENT", timeout_s=45)

        async def drained() -> bool:
            attrs = await env.clients.sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                              "ApproximateNumberOfMessagesNotVisible"])
            return set(attrs["Attributes"].values()) == {"0"}

        await eventually(drained, what="all advice copies acknowledged")
    mails = [m for m in sent_emails(env.endpoint)
             if m["destinations"]["ToAddresses"] == ["ap@ada-books.example"]
             and m["id"] == job.raw["delivery_id"]]
    assert len(mails) == 1
    assert job.attempt == 1
    executions = await env.executions(env.names.notification_sm)
    assert [e["name"] for e in executions] == ["REQ-2026-000001-a1"]


TOKEN = "notification-test-token"


async def test_notification_api_shows_delivery(env: Env) -> None:
    from httpx import ASGITransport, AsyncClient

    from shared.api import ApiAuth, Heartbeat, create_app

    async with running(env, build_enrichment), running(env, build_notification) as parts:
        await env.send(example("settled-usd-ach.json"))
        await job_in(env.store("notifications"), "REQ-2026-000001", "SENT", timeout_s=45)

        async def nothing() -> dict[str, Any]:
            return {}

        app = create_app(service="notification", readiness=nothing, heartbeat=Heartbeat(),
                         routers=parts.routers, auth=ApiAuth(token=TOKEN))
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t",
                               headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            body = (await http.get("/v1/notifications/REQ-2026-000001")).json()
    assert body["status"] == "SENT" and body["channel"] == "email"
    for key in ("template_id", "locale", "delivery_id", "attempt", "last_error"):
        assert key in body
    assert "payload" not in body
