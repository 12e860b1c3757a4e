"""Crash safety: ``kill -9`` at each explicit crash point loses nothing and repeats no effect.

Each case runs a real service process with ``REMITFLOW_FAULT_POINT`` set: the process
dies (``os._exit``, as abrupt as SIGKILL) the first time it reaches that point. A
fresh process then takes over, and the test checks the end state, the executions
started and the deliveries made.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from shared.pipeline.jobs import Job
from tests.helpers import Env, emails_to, eventually, job_in
from tools.demo import generate_messages
from tools.procs import service_process
from tools.stack import KINDS

pytestmark = pytest.mark.own_stack("kills real service processes and counts every effect")

FAST = {"REMITFLOW_RECEIVE_WAIT_S": "1", "REMITFLOW_TASK_HEARTBEAT_S": "1",
        "REMITFLOW_LEASE_TTL_S": "3", "REMITFLOW_STREAM_POLL_INTERVAL_S": "0.2",
        "REMITFLOW_SHUTDOWN_GRACE_S": "5", "REMITFLOW_SWEEPER_INTERVAL_S": "1",
        "REMITFLOW_VISIBILITY_TIMEOUT_S": "5", "REMITFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
        "REMITFLOW_STREAM_FAILOVER_S": "3",
        # every kind and channel retried after 1 s, then every 2 s (5 attempts)
        **{f"REMITFLOW_RETRY_SCHEDULE_{key.upper()}": "1s,2s,2s,2s"
           for kind in KINDS for key in (kind.name, *kind.schedules)}}


@contextmanager
def process(env: Env, service: str, **extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """A service process that a test may kill; killed (never drained) at the end."""
    with service_process(service, env.settings.prefix, {**FAST, **extra},
                         log=env.log_for(service)) as p:
        yield p.proc


async def died(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None


@pytest.mark.parametrize("point", ["intake.after_receive", "intake.after_put",
                                   "starter.after_running", "starter.after_start",
                                   "tasks.before_answer"])
async def test_enrichment_crash_point(env: Env, point: str) -> None:
    message = dict(generate_messages(1, prefix=f"REQ-CRASH-{point.replace('.', '-')}")[0])
    rid = message["request_id"]
    await env.send(message)
    with process(env, "enrichment", REMITFLOW_FAULT_POINT=point) as victim:
        await eventually(lambda: died(victim), timeout_s=60, what=f"crash at {point}")
        assert victim.returncode == 137
    with process(env, "enrichment"), process(env, "sweeper"):
        job = await job_in(env.store(), rid, "COMPLETED", timeout_s=90)
    executions = [e["name"] for e in await env.executions(env.names.enrichment_sm)]
    assert len(executions) == len(set(executions)) == job.attempt
    assert all(name.startswith(rid) for name in executions)


async def _enriched(env: Env, message: dict[str, object]) -> None:
    """Run enrichment until the remittance is COMPLETED (its advice is on the topic)."""
    await env.send(message)
    with process(env, "enrichment"):
        await job_in(env.store(), str(message["request_id"]), "COMPLETED", timeout_s=60)


async def _crash_notification(env: Env, point: str, end_state: str) -> tuple[Job, int]:
    """An enriched EUR remittance to a payee address of this test's own; the
    notification process dies at ``point``; a fresh one (and a sweeper) takes over.
    Returns the job in ``end_state`` and how many e-mails the address received."""
    address = f"{env.settings.prefix}@brandt.example"
    await env.clients.dynamodb.update_item(
        TableName=env.names.payees, Key={"payee_id": {"S": "PAYEE-0002"}},
        UpdateExpression="SET email = :e", ExpressionAttributeValues={":e": {"S": address}})
    message = dict(generate_messages(1, prefix=f"REQ-CRASH-{point.replace('.', '-')}")[0],
                   payee_id="PAYEE-0002", invoice_ids=["INV-2001"], amount="1234.56",
                   currency="EUR")
    await _enriched(env, message)
    with process(env, "notification", REMITFLOW_FAULT_POINT=point) as victim:
        await eventually(lambda: died(victim), timeout_s=60, what=f"crash at {point}")
    with process(env, "notification"), process(env, "sweeper"):
        job = await job_in(env.store("notifications"), str(message["request_id"]), end_state,
                           timeout_s=90)
    return job, len(emails_to(env, address))


async def test_crash_after_answer_is_recorded_delivers_once(env: Env) -> None:
    """Killed after the e-mail was sent and recorded, before answering the workflow."""
    job, emails = await _crash_notification(env, "tasks.before_answer", "SENT")
    assert emails == 1 and job.raw["delivery_id"]


async def test_crash_after_send_before_record_is_not_resent(env: Env) -> None:
    """Killed after SES accepted the e-mail but before its MessageId was recorded: the
    outcome is unknown to the process, never resent; SES's own ``Send``/``Delivery``
    events (the emulator publishes them, as SES does) settle it ``SENT`` with SES's
    message id, nothing left for a human. (Without events it would wait ``FAILED`` for
    an operator: ``tests/services/notification/test_delivery_ses.py``.)"""
    job, emails = await _crash_notification(env, "notify.after_send", "SENT")
    assert emails == 1 and job.raw["delivery_id"] != "operator"
    assert re.search(r"SES (Send|Delivery) event for attempt \d+: sent",
                     " | ".join(job.raw.get("history", [])))


async def test_crash_after_send_is_settled_by_its_ses_event_not_by_a_human(env: Env) -> None:
    """Killed after SES accepted the e-mail, before its MessageId was recorded. SES's own
    ``Send`` event (published here in SES's format as well as by the emulator: a duplicate
    is harmless) settles the unknown outcome: SENT with SES's message id, nothing for a
    human, one e-mail."""
    address = f"{env.settings.prefix}-events@brandt.example"
    await env.clients.dynamodb.update_item(
        TableName=env.names.payees, Key={"payee_id": {"S": "PAYEE-0002"}},
        UpdateExpression="SET email = :e", ExpressionAttributeValues={":e": {"S": address}})
    message = dict(generate_messages(1, prefix="REQ-CRASH-SES-EVENT")[0],
                   payee_id="PAYEE-0002", invoice_ids=["INV-2001"], amount="1234.56",
                   currency="EUR")
    rid = str(message["request_id"])
    await _enriched(env, message)
    with process(env, "notification", REMITFLOW_FAULT_POINT="notify.after_send") as victim:
        await eventually(lambda: died(victim), timeout_s=60, what="crash after the send")
    mails = emails_to(env, address)
    assert len(mails) == 1, "SES accepted it before the crash"
    job = await env.store("notifications").require(rid)
    event = json.dumps({
        "eventType": "Send",
        "mail": {"timestamp": "2026-11-26T10:00:00.000Z", "source": env.settings.sender_email,
                 "messageId": mails[0]["id"], "destination": [address],
                 "tags": {"request_id": [rid], "attempt": [str(job.attempt)]}},
        "send": {}})
    topic = f"arn:aws:sns:{env.settings.aws_region}:123456789012:{env.names.name('ses-events')}"
    await env.clients.sns.publish(TopicArn=topic, Message=event)
    with process(env, "notification"), process(env, "sweeper"):
        sent = await job_in(env.store("notifications"), rid, "SENT", timeout_s=90)
    assert sent.raw["delivery_id"] == mails[0]["id"]
    assert len(emails_to(env, address)) == 1, "never resent"
