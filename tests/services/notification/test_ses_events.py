"""SES sending events settle e-mails whose send outcome is unknown.

The embedded emulator publishes SES's ``Send`` and ``Delivery`` events for every
accepted e-mail (``shared/aws/emulator_ses.py``), as SES does; events SES would send
for a refused e-mail (``Reject``) and stale ones are published by the tests in SES's
format to the ``<prefix>-ses-events`` topic. SES sits behind the fault proxy
(``tests/faultproxy_ses.py``). Each test ends on the invariant: the event queue is
empty after a visibility timeout.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from services.enrichment.service import build as build_enrichment
from services.notification.service import build as build_notification
from services.notification.ses_events import (
    SES_EVENTS,
    VALIDATION_MESSAGE,
    SesEvent,
    SesEvents,
    event_label,
    intent_value,
    message_tags,
)
from shared.aws.clients import AwsClients
from shared.pipeline.jobs import Job, JobStore, Status
from shared.runtime import ServiceParts
from shared.settings import Settings
from tests.faultproxy_ses import Mode, SesFaultProxy
from tests.helpers import (
    Env,
    emails_to,
    eventually,
    example,
    history,
    job_in,
    replace_settings,
    retrying,
    running,
)

pytestmark = pytest.mark.own_stack("asserts the SES-event queue and its DLQ empty")

ADDRESS = "ap@ada-books.example"          # the payee of settled-usd-ach.json
REQUEST = "REQ-2026-000001"
VISIBILITY_S = 5                          # the event worker's visibility in these tests


@pytest.fixture
def proxy(emulator: str) -> Iterator[SesFaultProxy]:
    p = SesFaultProxy(emulator).start()
    yield p
    p.stop()


def ses_event(event_type: str, message_id: str, request_id: str, attempt: int) -> str:
    """An SES sending event as the configuration set's SNS destination publishes it."""
    return json.dumps({
        "eventType": event_type,
        "mail": {"timestamp": "2026-11-26T10:00:00.000Z", "source": "remittances@example.com",
                 "messageId": message_id, "destination": [ADDRESS],
                 "tags": {"request_id": [request_id], "attempt": [str(attempt)],
                          "ses:configuration-set": ["x"]}},
        event_type.lower(): {}})


def events(env: Env) -> str:
    return env.names.name("ses-events")


async def publish(env: Env, body: str) -> None:
    topic = f"arn:aws:sns:{env.settings.aws_region}:123456789012:{env.names.name('ses-events')}"
    await env.clients.sns.publish(TopicArn=topic, Message=body)


@asynccontextmanager
async def pipeline_via(env: Env, proxy: SesFaultProxy, *,
                       events_worker: bool = True) -> AsyncIterator[None]:
    """Both services, notification's AWS calls through ``proxy`` (optionally without
    its SES event worker, so that events wait on their queue)."""
    settings = replace_settings(env.settings, **{"aws_endpoint_url": proxy.endpoint,
                                               "visibility_timeout_s": VISIBILITY_S})

    async def notification(settings: Settings, clients: AwsClients) -> ServiceParts:
        parts = await build_notification(settings, clients)
        if not events_worker:
            parts.workers = [w for w in parts.workers if not isinstance(w, SesEvents)]
        return parts

    async with AwsClients(settings) as clients, running(env, build_enrichment), \
            running(Env(settings, clients, env.endpoint), notification):
        yield


async def in_doubt(env: Env) -> Job:
    await env.send(example("settled-usd-ach.json"))
    job = await job_in(env.store("notifications"), REQUEST, "FAILED", timeout_s=60)
    assert job.raw["failure_reason"] == "outcome_unknown"
    assert job.raw["awaiting_ses_event_until"] and job.raw["delivery_intent"]
    assert "waiting for its SES event until" in history(job)
    return job


async def test_ses_events_settle_an_unknown_outcome(fresh_env: Env,
                                                  proxy: SesFaultProxy) -> None:
    """Black box, as the issue met it: SES accepts, the caller sees 500, SES's own
    ``Send``/``Delivery`` events (published by the emulator) settle the job ``SENT``
    with SES's message id, and every event is acknowledged."""
    env = fresh_env
    before = emails_to(env, ADDRESS)
    proxy.mode = "after"                         # SES accepted it, the client saw a 500
    async with pipeline_via(env, proxy):
        await env.send(example("settled-usd-ach.json"))
        sent = await job_in(env.store("notifications"), REQUEST, "SENT", timeout_s=60)
        assert await env.left_after_visibility(events(env), VISIBILITY_S) == 0, \
            "every SES event acknowledged"
    mails = emails_to(env, ADDRESS)
    assert len(mails) == len(before) + 1, "never resent"
    assert sent.raw["delivery_id"] == mails[-1]["id"] and sent.attempt == 1
    assert "delivery_intent" not in sent.raw and "awaiting_ses_event_until" not in sent.raw
    assert re.search(r"SES (Send|Delivery) event for attempt 1: sent", history(sent))
    assert await env.left_on(f"{events(env)}-dlq") == 0, "the validation notice included"


async def test_a_late_event_marks_the_failed_job_sent(fresh_env: Env,
                                                      proxy: SesFaultProxy) -> None:
    """The events arrive after the handler gave up (``FAILED``, outcome unknown):
    they wait on the queue while no event worker runs, then settle the job."""
    env = fresh_env
    proxy.mode = "after"
    async with pipeline_via(env, proxy, events_worker=False):
        failed = await in_doubt(env)
    async with pipeline_via(env, proxy):
        sent = await job_in(env.store("notifications"), REQUEST, "SENT", timeout_s=30)
        assert await env.left_after_visibility(events(env), VISIBILITY_S) == 0
    assert sent.attempt == failed.attempt == 1
    assert sent.raw["delivery_id"] == emails_to(env, ADDRESS)[-1]["id"]
    assert re.search(r"SES (Send|Delivery) event for attempt 1: sent", history(sent))


@pytest.mark.parametrize("answer", ["pass", "after"])
async def test_an_event_before_the_record_is_the_senders_own_outcome(
        fresh_env: Env, proxy: SesFaultProxy, answer: Mode) -> None:
    """SES's event settles the job while the handler still waits for ``SendEmail``'s
    answer (LocalStack publishes during the call; AWS does not promise an order).
    Whether the answer then is the message id or a 500, the handler takes the settle
    as its own outcome: attempt 1 ends ``SENT``, one e-mail, no retry, no human."""
    env = fresh_env
    proxy.mode, proxy.hold = answer, threading.Event()
    store = env.store("notifications")
    async with pipeline_via(env, proxy):
        await env.send(example("settled-usd-ach.json"))

        async def settled_while_held() -> Job | None:
            job = await store.get(REQUEST)
            return job if job and job.raw.get("delivery_id") and proxy.holding else None

        settled = await eventually(settled_while_held, timeout_s=60,
                                   what="the SES event settling the job mid-send")
        assert settled.status == "RUNNING" and "delivery_intent" not in settled.raw
        proxy.hold.set()
        sent = await job_in(store, REQUEST, "SENT", "FAILED", timeout_s=60)
        assert await env.left_after_visibility(events(env), VISIBILITY_S) == 0
    mails = emails_to(env, ADDRESS)
    assert sent.status == "SENT", history(sent)
    assert sent.attempt == 1, f"no second attempt: {history(sent)}"
    assert sent.raw["delivery_id"] == settled.raw["delivery_id"] == mails[-1]["id"]
    assert "outcome unknown" not in history(sent)


async def test_reject_event_redrives_and_sends_once(fresh_env: Env,
                                                    proxy: SesFaultProxy) -> None:
    env = fresh_env
    before = len(emails_to(env, ADDRESS))
    proxy.mode = "before"                        # nothing reached SES
    async with pipeline_via(env, proxy):
        failed = await in_doubt(env)
        proxy.mode = "pass"
        # A stale event (another attempt) and a non-event change nothing.
        await publish(env, ses_event("Send", "stale-id", REQUEST, failed.attempt + 5))
        await publish(env, ses_event("Reject", "0000-reject", REQUEST, failed.attempt))
        sent = await job_in(env.store("notifications"), REQUEST, "SENT", timeout_s=60)
        assert await env.left_after_visibility(events(env), VISIBILITY_S) == 0, \
            "the stale, the Reject and attempt 2's own events acknowledged"
    assert sent.attempt == failed.attempt + 1
    assert "SES Reject event for attempt 1: not sent" in history(sent)
    mails = emails_to(env, ADDRESS)
    assert len(mails) == before + 1 and mails[-1]["id"] == sent.raw["delivery_id"]
    assert await env.left_on(f"{events(env)}-dlq") == 0


async def test_invalid_messages_are_dead_lettered(fresh_env: Env) -> None:
    env = fresh_env
    async with running(env.with_settings(visibility_timeout_s=VISIBILITY_S),
                       build_notification):
        await publish(env, "not json")
        dead = await env.drain(f"{events(env)}-dlq", wait_s=10)
        assert await env.left_after_visibility(events(env), VISIBILITY_S) == 0
    assert len(dead) == 1
    assert dead[0]["MessageAttributes"]["remitflow.reason"]["StringValue"] == "invalid_event"


async def test_the_topic_validation_notice_is_acknowledged(fresh_env: Env) -> None:
    """SES publishes this plain text once when the event destination is created."""
    env = fresh_env
    before = SES_EVENTS.labels(event="-", outcome="validation")._value.get()
    async with running(env.with_settings(visibility_timeout_s=VISIBILITY_S),
                       build_notification):
        await publish(env, VALIDATION_MESSAGE)
        await publish(env, json.dumps({"Type": "Notification", "Message": VALIDATION_MESSAGE}))
        await publish(env, VALIDATION_MESSAGE + " (or so)")        # not the notice: invalid
        dead = await env.drain(f"{events(env)}-dlq", wait_s=10)
        assert await env.left_after_visibility(events(env), VISIBILITY_S) == 0
    assert [m["Body"] for m in dead] == [VALIDATION_MESSAGE + " (or so)"]
    # SES's own notice from bootstrap's event destination (the emulator publishes it,
    # as SES does) and the two published here
    assert SES_EVENTS.labels(event="-", outcome="validation")._value.get() == before + 3


async def test_an_event_settles_the_attempt_its_intent_names(fresh_env: Env) -> None:
    """The process died after SES accepted: the job is ``RETRY_PENDING`` (task timed
    out) or already re-driven and parked ``FAILED`` at attempt 2 (which does not
    resend an e-mail in doubt). Attempt 1's event still settles both."""
    env = fresh_env
    store = env.store("notifications")
    jobs = {}
    for rid, end, attempt in (("REQ-SES-RP", Status.RETRY_PENDING, 1),
                              ("REQ-SES-A2", Status.FAILED, 2)):
        job = await retrying(store, rid, attempt=attempt, due=2_000_000_000)
        if end is Status.FAILED:
            job = await store.transition(job, Status.FAILED,
                                         set_={"failure_reason": "outcome_unknown"})
        jobs[rid] = await store.update(job, {"delivery_intent": intent_value(1)})
    async with running(env.with_settings(visibility_timeout_s=VISIBILITY_S),
                       build_notification):
        for rid in jobs:
            await publish(env, ses_event("Send", f"ses-{rid}", rid, 1))
        pending = await eventually(lambda: _delivered(store, "REQ-SES-RP"), timeout_s=30,
                                   what="the delivery recorded on the pending job")
        sent = await job_in(store, "REQ-SES-A2", "SENT", timeout_s=30)
        assert await env.left_after_visibility(events(env), VISIBILITY_S) == 0
    assert pending.status is Status.RETRY_PENDING and "delivery_intent" not in pending.raw
    assert sent.raw["delivery_id"] == "ses-REQ-SES-A2" and sent.attempt == 2


async def _delivered(store: JobStore, rid: str) -> Job | None:
    job = await store.get(rid)
    return job if job is not None and job.raw.get("delivery_id") == f"ses-{rid}" else None


def test_the_event_type_label_is_from_a_fixed_set() -> None:
    assert event_label("Delivery") == "Delivery"
    assert event_label("Reject") == "Reject"
    assert event_label("x" * 200) == "other"
    assert event_label("delivery") == "other"


def test_event_parsing_and_tags() -> None:
    raw = ses_event("Delivery", "m-1", "REQ-1", 3)
    assert SesEvent.parse(raw) == SesEvent("Delivery", "m-1", "REQ-1", 3)
    envelope = json.dumps({"Type": "Notification", "Message": raw})
    assert SesEvent.parse(envelope).message_id == "m-1"
    assert message_tags("REQ-1", 2) == [{"Name": "request_id", "Value": "REQ-1"},
                                        {"Name": "attempt", "Value": "2"}]
    assert message_tags("weird id/with spaces", 1) == []
