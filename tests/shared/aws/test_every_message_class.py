"""Every SQS consumer, every class of message it can meet: acknowledged, and only the
unreadable kept.

The consumers are the declared ones (``tests.helpers.declared_consumers``, from the job
kinds, the file drops and the sweeper's status queue); each has its classes below
(valid, duplicate, stale or superseded, unknown request, malformed, not an event,
where the class exists for it), fed with the production logging configuration
through the path a real message takes where there is one (an execution's own task,
an S3 upload, an EventBridge event). After the consumer's visibility timeout the
invariant is asserted: the source queue holds nothing (visible + in flight +
delayed), exactly the malformed and non-events are in its DLQ, each with a
``remitflow.reason``, and the job table holds what the valid message made. A consumer
added without classes here fails ``test_every_consumer_has_its_message_classes``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources

import pytest

from services.notification.ses_events import INTENT, intent_value
from services.sweeper.service import build_sweeper
from shared.aws.emulator_ses import ses_event
from shared.aws.names import Names
from shared.logs import configure_logging
from shared.pipeline.jobs import Status, content_hash
from tests.helpers import (
    Env,
    built_consumers,
    close,
    declared_consumers,
    detail_of,
    eventually,
    job_in,
    message,
    publish_status_event,
    started_job,
)
from tests.services.notification.support import make_advice
from tools.stack import KINDS, file_drops

NOT_AN_EVENT = "not json {"
ISO = resources.files("shared.contracts").joinpath("examples", "iso20022")


@dataclass
class Fed:
    """What a scenario put on the queue: the bodies that must end in the DLQ, and the
    check of the job table once the consumer is done."""

    dead: list[str] = field(default_factory=list)
    check: Callable[[Env], Awaitable[None]] | None = None


async def _send(env: Env, queue: str, *bodies: str, delay_s: int = 0) -> None:
    url = await env.queue_url(queue)
    for body in bodies:
        await env.clients.sqs.send_message(QueueUrl=url, MessageBody=body,
                                           DelaySeconds=delay_s)


async def remittance_events(env: Env, queue: str) -> Fed:
    valid = json.dumps(message("REQ-MC-IN-1"))
    conflicting = json.dumps(dict(message("REQ-MC-IN-1"), amount="1.00"))
    malformed = json.dumps(dict(message("REQ-MC-IN-2"), amount="12.3.4"))
    await _send(env, queue, valid, valid, malformed, NOT_AN_EVENT)
    # A standard queue promises no order: the conflicting copy comes later, so the
    # first content stored is the valid one and the conflict is the one dead-lettered.
    await _send(env, queue, conflicting, delay_s=3)

    async def check(env: Env) -> None:
        job = await env.store().require("REQ-MC-IN-1")
        assert job.status is Status.RECEIVED and job.raw["payload"] == valid
        assert await env.store().get("REQ-MC-IN-2") is None
    return Fed(dead=[conflicting, malformed, NOT_AN_EVENT], check=check)


async def notification_events(env: Env, queue: str) -> Fed:
    valid = make_advice(request_id="REQ-MC-NE-1").model_dump_json()
    republished = json.dumps(dict(json.loads(valid), enriched_at="2026-12-01T00:00:00Z"))
    malformed = json.dumps({"request_id": "REQ-MC-NE-2", "payee": "nobody"})
    await _send(env, queue, valid, republished, malformed, NOT_AN_EVENT)

    async def check(env: Env) -> None:
        job = await env.store("notifications").require("REQ-MC-NE-1")
        assert job.status is Status.RECEIVED
        assert await env.store("notifications").get("REQ-MC-NE-2") is None
    return Fed(dead=[malformed, NOT_AN_EVENT], check=check)


async def _own_task(env: Env, queue: str) -> str:
    """The task message a started execution put on ``queue``, taken off it."""
    url = await env.queue_url(queue)

    async def taken() -> str | None:
        resp = await env.clients.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
        for m in resp.get("Messages", []):
            await env.clients.sqs.delete_message(QueueUrl=url,
                                                 ReceiptHandle=m["ReceiptHandle"])
            return str(m["Body"])
        return None
    return await eventually(taken, timeout_s=20, what=f"the execution's task on {queue}")


def _tasks(table: str, success: str, payload: Callable[[str], str | None]
           ) -> Callable[[Env, str], Awaitable[Fed]]:
    async def scenario(env: Env, queue: str) -> Fed:
        rid = f"REQ-MC-{table[:3].upper()}-1"
        first, _ = await started_job(env, rid, table, payload(rid))
        superseded = await _own_task(env, queue)
        # Attempt 2 supersedes attempt 1 (a re-drive got there first): its task is the
        # valid one, attempt 1's is stale.
        retry = await env.store(table).transition(first, Status.RETRY_PENDING,
                                                  set_={"last_error": "x"},
                                                  sort_value=int(time.time()))
        sweeper = await build_sweeper(env.settings, env.clients, KINDS)
        assert await sweeper.target(table).starter.begin(retry) is not None
        valid = await _own_task(env, queue)
        unknown = json.dumps({"task_token": "mc-token-of-no-execution",
                              "request_id": "REQ-MC-NEVER-STORED",
                              "execution_name": "REQ-MC-NEVER-STORED-a1"})
        malformed = json.dumps({"task_token": "x", "request_id": rid})
        await _send(env, queue, valid, superseded, unknown, malformed, NOT_AN_EVENT)
        # The duplicate comes later: two copies in one receive race (the second finds
        # the first's e-mail intent and waits for its SES event, which this test does not
        # consume); here the duplicate of a finished task is the class under test.
        await _send(env, queue, valid, delay_s=3)

        async def check(env: Env) -> None:
            done = await job_in(env.store(table), rid, success, timeout_s=30)
            assert done.attempt == 2
            assert await env.store(table).get("REQ-MC-NEVER-STORED") is None
        return Fed(dead=[malformed, NOT_AN_EVENT], check=check)
    return scenario


async def ses_events(env: Env, queue: str) -> Fed:
    store = env.store("notifications")
    payload = make_advice(request_id="REQ-MC-SES-1").model_dump_json()
    job = await store.create("REQ-MC-SES-1", payload, content_hash(payload))
    assert job is not None
    job = await store.transition(job, Status.RUNNING, sort_value=int(time.time()),
                                 set_={"attempt": 1, "channel": "email",
                                       INTENT: intent_value(1)})
    await store.transition(job, Status.FAILED, set_={"failure_reason": "outcome_unknown",
                                                     "last_error": "SES outcome unknown"})

    def event(rid: str, attempt: str = "1") -> str:
        return json.dumps(ses_event(
            "Delivery", message_id=f"ses-{rid}-{attempt}", source="remittances@example.com",
            destinations=["payee@example.com"], subject="Remittance",
            tags={"request_id": [rid], "attempt": [attempt]}, account="123456789012",
            region="us-east-1", at=datetime.now(UTC)))
    valid = event("REQ-MC-SES-1")
    malformed = json.dumps({"eventType": "Delivery"})
    await _send(env, queue, valid, valid, event("REQ-MC-SES-1", "2"),
                event("REQ-MC-NEVER-STORED"), malformed, NOT_AN_EVENT)

    async def check(env: Env) -> None:
        await job_in(env.store("notifications"), "REQ-MC-SES-1", "SENT", timeout_s=10)
    return Fed(dead=[malformed, NOT_AN_EVENT], check=check)


async def execution_status(env: Env, queue: str) -> Fed:
    _, desc = await started_job(env, "REQ-MC-EVT-1")
    await env.clients.sfn.stop_execution(executionArn=desc["executionArn"])
    valid = detail_of(desc, "ABORTED")
    unknown = valid | {"name": "REQ-MC-NEVER-STORED-a1", "input": json.dumps(
        {"request_id": "REQ-MC-NEVER-STORED", "attempt": 1})}
    for detail in (valid, valid, unknown):           # valid, duplicate (stale), unknown
        await publish_status_event(env, detail)
    malformed = json.dumps({"detail-type": "Step Functions Execution Status Change"})
    await _send(env, queue, malformed, NOT_AN_EVENT)

    async def check(env: Env) -> None:
        await job_in(env.store(), "REQ-MC-EVT-1", Status.RETRY_PENDING.value, timeout_s=10)
    return Fed(dead=[malformed, NOT_AN_EVENT], check=check)


async def partner_files(env: Env, queue: str) -> Fed:
    drop = file_drops(env.settings)[0]
    bucket = drop.bucket_name(env.settings.prefix)
    name = "pain.002.001.10-accepted-and-rejected.xml"   # every transaction makes a job
    data = ISO.joinpath(name).read_bytes()
    # valid, the same object again (a duplicate event), the same bytes under a new key
    for key in (f"FIRSTBANK/mc/{name}", f"FIRSTBANK/mc/{name}", f"FIRSTBANK/mc/again-{name}"):
        await env.clients.s3.put_object(Bucket=bucket, Key=key, Body=data)
    await _send(env, queue, NOT_AN_EVENT)

    async def check(env: Env) -> None:
        for rid in ("ISO-FIRSTBANK-E2E-FB-0001", "ISO-FIRSTBANK-E2E-FB-0002",
                    "ISO-FIRSTBANK-E2E-FB-0003"):
            await job_in(env.store(), rid, Status.RECEIVED.value, timeout_s=30)
    return Fed(dead=[NOT_AN_EVENT], check=check)


#: consumer (short queue name) → its scenario
SCENARIOS: dict[str, Callable[[Env, str], Awaitable[Fed]]] = {
    "remittance-events": remittance_events,
    "notification-events": notification_events,
    "enrichment-tasks": _tasks("remittances", "COMPLETED", lambda rid: None),
    "notification-tasks": _tasks("notifications", "SENT", lambda rid: make_advice(
        request_id=rid).model_dump_json()),
    "ses-events": ses_events,
    "execution-status": execution_status,
    "partner-files": partner_files,
}


def test_every_consumer_has_its_message_classes() -> None:
    assert sorted(SCENARIOS) == declared_consumers()


@pytest.mark.parametrize("short", declared_consumers())
async def test_every_message_class_is_acknowledged(fresh_env: Env, short: str) -> None:
    configure_logging("INFO", "json")                       # as in production
    # Short visibilities: event queues 5 s, tasks 3 x 2 + 10 s (heartbeats more often
    # than the workflow needs is allowed).
    env = fresh_env.with_settings(visibility_timeout_s=5, task_heartbeat_s=2)
    queue = env.names.name(short)
    consumers, built = await built_consumers(env)
    worker = consumers[queue]
    fed = await SCENARIOS[short](env, queue)
    task = asyncio.create_task(worker.run())
    dead: list[dict[str, object]] = []
    try:
        async def all_dead() -> bool:
            dead.extend(await env.drain(Names.dlq(queue), wait_s=0))
            return len(dead) >= len(fed.dead)

        await eventually(all_dead, timeout_s=30, what=f"{short}: the unreadable in its DLQ")
        if fed.check is not None:
            await fed.check(env)
        assert await env.left_after_visibility(queue, worker.visibility_s) == 0, \
            f"{short}: every message acknowledged after a visibility timeout"
        dead.extend(await env.drain(Names.dlq(queue), wait_s=0))
    finally:
        worker.shutdown()
        await asyncio.wait_for(task, timeout=20)
        await close(built)
    assert sorted(str(m["Body"]) for m in dead) == sorted(fed.dead)
    reasons = [m["MessageAttributes"]["remitflow.reason"]["StringValue"]  # type: ignore[index]
               for m in dead]
    assert all(reasons), reasons
