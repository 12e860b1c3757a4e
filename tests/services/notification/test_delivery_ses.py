"""E-mail outcomes by what SES's answer proves, and the operator's decision on the unknown.

SES sits behind a real fault-injecting proxy process thread (``tests/faultproxy_ses.py``):
the notification service talks to the emulator through it, and it breaks only
``SendEmail``. Nothing in the AWS client is mocked.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import httpx
import pytest

from services.enrichment.service import build as build_enrichment
from services.notification.service import build as build_notification
from services.notification.ses_events import SesEvents
from services.sweeper.service import build_sweeper
from shared.api import ApiAuth, Heartbeat, create_app
from shared.aws.clients import AwsClients
from shared.pipeline.jobs import Job
from shared.runtime import ServiceParts
from shared.settings import Settings
from tests.faultproxy_ses import SesFaultProxy
from tests.helpers import Env, emails_to, job_in, running
from tools.stack import KINDS, builder

pytestmark = pytest.mark.own_stack("runs the notification workers over the whole intake queue")

EXAMPLES = resources.files("shared.contracts").joinpath("examples")
TOKEN = "resolve-test-token"
ADDRESS = "ap@ada-books.example"          # the payee of settled-usd-ach.json
REQUEST = "REQ-2026-000001"


@pytest.fixture
def proxy(emulator: str) -> Iterator[SesFaultProxy]:
    p = SesFaultProxy(emulator).start()
    yield p
    p.stop()


async def without_ses_events(settings: Settings, clients: AwsClients) -> ServiceParts:
    """The notification service minus its SES-event worker: SES's events (which the
    emulator publishes, as SES does) wait unread, so the outcome stays unknown, as
    when events are late or no configuration set is used."""
    parts = await build_notification(settings, clients)
    parts.workers = [w for w in parts.workers if not isinstance(w, SesEvents)]
    return parts


@asynccontextmanager
async def notification_via(env: Env, proxy: SesFaultProxy) -> AsyncIterator[None]:
    """The notification service, every AWS call of it through the proxy."""
    settings = env.settings.model_copy(update={"aws_endpoint_url": proxy.endpoint})
    async with AwsClients(settings) as clients, \
            running(Env(settings, clients, env.endpoint), without_ses_events):
        yield


@asynccontextmanager
async def sweeper_api(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    parts = await builder("sweeper")(env.settings, env.clients)

    async def ready() -> dict[str, Any]:
        return {}

    app = create_app(service="sweeper", readiness=ready, heartbeat=Heartbeat(),
                     routers=parts.routers, auth=ApiAuth(token=TOKEN))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://sweeper") as client:
        yield client


async def unknown_outcome(env: Env, proxy: SesFaultProxy) -> Job:
    async with running(env, build_enrichment), notification_via(env, proxy):
        await env.send(EXAMPLES.joinpath("settled-usd-ach.json").read_text())
        return await job_in(env.store("notifications"), REQUEST, "FAILED", timeout_s=60)


def history(job: Job) -> str:
    return "\n".join(job.raw.get("history", []))


async def test_500_after_acceptance_is_outcome_unknown_never_resent(
        env: Env, proxy: SesFaultProxy) -> None:
    before = len(emails_to(env, ADDRESS))
    proxy.mode = "after"
    job = await unknown_outcome(env, proxy)
    assert job.raw["failure_reason"] == "outcome_unknown"
    assert "InternalFailure" in job.raw["last_error"]
    assert job.raw.get("delivery_intent") and "delivery_id" not in job.raw
    assert proxy.send_emails == proxy.forwarded == 1
    assert len(emails_to(env, ADDRESS)) == before + 1, "exactly one e-mail reached SES"
    async with sweeper_api(env) as api:   # a plain re-drive would guess: refused
        resp = await api.post(f"/v1/jobs/notifications/{REQUEST}/redrive",
                              headers={"authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 409 and "resolve" in resp.text


async def test_resolve_sent_marks_sent_and_sends_nothing(env: Env,
                                                         proxy: SesFaultProxy) -> None:
    proxy.mode = "after"
    await unknown_outcome(env, proxy)
    before = len(emails_to(env, ADDRESS))
    async with sweeper_api(env) as api:
        denied = await api.post(f"/v1/jobs/notifications/{REQUEST}/resolve",
                                json={"outcome": "sent"})
        resp = await api.post(f"/v1/jobs/notifications/{REQUEST}/resolve",
                              json={"outcome": "sent", "note": "payee confirmed receipt"},
                              headers={"authorization": f"Bearer {TOKEN}"})
    assert denied.status_code == 401
    assert resp.status_code == 200, resp.text
    job = await env.store("notifications").require(REQUEST)
    assert job.status == "SENT" and job.raw["delivery_id"] == "operator"
    assert "failed_job" not in job.raw and "delivery_intent" not in job.raw
    assert job.raw["resolution"]["note"] == "payee confirmed receipt"
    assert re.search(r"resolved by api[^:]*: sent \(payee confirmed receipt\)", history(job))
    assert len(emails_to(env, ADDRESS)) == before


async def test_resolve_not_sent_sends_exactly_one_email(env: Env,
                                                        proxy: SesFaultProxy) -> None:
    before = len(emails_to(env, ADDRESS))
    proxy.mode = "before"                 # SES failed without accepting
    failed = await unknown_outcome(env, proxy)
    assert failed.raw["failure_reason"] == "outcome_unknown"
    assert len(emails_to(env, ADDRESS)) == before
    proxy.mode = "pass"
    async with sweeper_api(env) as api, notification_via(env, proxy):
        resp = await api.post(f"/v1/jobs/notifications/{REQUEST}/resolve",
                              json={"outcome": "not_sent", "note": "bounced in SES logs"},
                              headers={"authorization": f"Bearer {TOKEN}"})
        assert resp.status_code == 200, resp.text
        job = await job_in(env.store("notifications"), REQUEST, "SENT", timeout_s=60)
    mails = emails_to(env, ADDRESS)
    assert len(mails) == before + 1
    assert mails[-1]["id"] == job.raw["delivery_id"]
    assert job.attempt == failed.attempt + 1
    assert re.search(r"resolved by api[^:]*: not sent \(bounced in SES logs\)", history(job))


async def test_resend_policy_is_at_least_once(env: Env, proxy: SesFaultProxy) -> None:
    """``email_unknown_outcome=resend``: retried once the grace period is over."""
    # No SES event window either (resend otherwise waits at least that long for one).
    env = env.with_settings(email_unknown_outcome="resend", email_resend_after_s=0,
                            ses_event_window_s=0, retry_schedules={"email": "0,0"})
    before = len(emails_to(env, ADDRESS))
    proxy.mode = "before"
    async with running(env, build_enrichment), notification_via(env, proxy):
        await env.send(EXAMPLES.joinpath("settled-usd-ach.json").read_text())
        job = await job_in(env.store("notifications"), REQUEST, "RETRY_PENDING",
                           timeout_s=60)
        assert job.raw.get("delivery_intent")
        assert "outcome unknown" in history(job)
        proxy.mode = "pass"
        sweeper = await build_sweeper(env.settings, env.clients, KINDS)
        report = await sweeper.sweep_once(force=True, now=time.time() + 5)
        assert report.tables["notifications"].redriven == 1
        sent = await job_in(env.store("notifications"), REQUEST, "SENT", timeout_s=60)
    assert "resending (at-least-once)" in history(sent)
    assert len(emails_to(env, ADDRESS)) == before + 1
