"""Execution status events, from EventBridge on: rule → queue → sweeper → job settled.

The emulator's Step Functions emits no status events, so each test publishes one in
the documented AWS format with ``PutEvents`` to the emulator's default bus; the
rule bootstrap created routes it to the execution-status queue, exactly as on AWS.
The executions themselves are real: started by the starter, stopped with
``StopExecution`` so they end without their own status write.
"""

from __future__ import annotations

import json
import time

import pytest

from services.sweeper.service import build_status_events, build_sweeper
from shared.aws.names import Names
from shared.metrics import EXECUTION_EVENTS
from shared.operations.status_events import ExecutionEvents
from shared.pipeline.jobs import Status
from tests.helpers import Env, detail_of, history, started_job
from tests.helpers import publish_status_event as publish
from tools.stack import KINDS

pytestmark = pytest.mark.own_stack("asserts the execution-status queue and its DLQ empty")


async def consumer(env: Env) -> ExecutionEvents:
    sweeper = await build_sweeper(env.settings, env.clients, KINDS)
    return await build_status_events(env.settings, env.clients, sweeper)


async def poll_until(events: ExecutionEvents, outcome_count: int, *,
                     timeout_s: float = 20) -> int:
    """Drive the consumer one receive at a time until it has handled ``outcome_count``."""
    handled, deadline = 0, time.monotonic() + timeout_s
    while handled < outcome_count and time.monotonic() < deadline:
        handled += await events.poll_once()
        await events.drain()
    return handled


def counted(outcome: str, status: str = "ABORTED", table: str | None = None) -> float:
    labels = {"status": status, "outcome": outcome}
    for metric in EXECUTION_EVENTS.collect():
        return sum(s.value for s in metric.samples if s.name.endswith("_total")
                   and all(s.labels.get(k) == v for k, v in labels.items())
                   and (table is None or s.labels.get("table") == table))
    return 0.0


async def test_aborted_execution_is_settled_from_its_event(env: Env) -> None:
    store = env.store()
    job, desc = await started_job(env, "REQ-EVT-1")
    stopped_at = time.monotonic()
    await env.clients.sfn.stop_execution(executionArn=desc["executionArn"])
    events = await consumer(env)
    before = counted("applied", table=store.table)
    await publish(env, detail_of(desc, "ABORTED"))
    assert await poll_until(events, 1) == 1
    settled = await store.get("REQ-EVT-1")
    assert settled is not None and settled.status is Status.RETRY_PENDING
    assert settled.version == job.version + 1
    assert "settled by execution status event: ABORTED" in history(settled)
    assert counted("applied", table=store.table) == before + 1
    # the number the docs quote: seconds from the execution's end to a settled job
    print(f"settled {time.monotonic() - stopped_at:.2f} s after StopExecution "
          f"(reconcile would wait {env.settings.reconcile_after_effective_s:.0f} s)")


async def test_event_for_an_older_attempt_never_touches_the_newer(env: Env) -> None:
    store = env.store()
    job, desc = await started_job(env, "REQ-EVT-2")
    await env.clients.sfn.stop_execution(executionArn=desc["executionArn"])
    # attempt 2 is already running (a re-drive got there first)
    sweeper = await build_sweeper(env.settings, env.clients, KINDS)
    target = sweeper.target("remittances")
    retry = await store.transition(job, Status.RETRY_PENDING, set_={"last_error": "x"},
                                   sort_value=int(time.time()))
    newer = await target.starter.begin(retry)
    assert newer is not None and newer.attempt == 2
    events = await consumer(env)
    before = counted("stale", table=store.table)
    await publish(env, detail_of(desc, "TIMED_OUT") | {"status": "ABORTED"})
    assert await poll_until(events, 1) == 1
    after = await store.get("REQ-EVT-2")
    assert after is not None and (after.status, after.attempt) == (Status.RUNNING, 2)
    assert after.version == newer.version, "not written"
    assert counted("stale", table=store.table) == before + 1


async def test_unknown_execution_is_counted_and_dropped(env: Env) -> None:
    _, desc = await started_job(env, "REQ-EVT-3")
    events = await consumer(env)
    before = counted("unknown", status="FAILED")
    ghost = detail_of(desc, "FAILED") | {
        "name": "REQ-NEVER-STORED-a1",
        "input": json.dumps({"request_id": "REQ-NEVER-STORED", "attempt": 1})}
    await publish(env, ghost)
    assert await poll_until(events, 1) == 1
    assert counted("unknown", status="FAILED") == before + 1
    assert await poll_until(events, 1, timeout_s=2) == 0, "acknowledged, not redelivered"


async def test_a_message_that_is_no_event_goes_to_the_dlq_with_a_reason(env: Env) -> None:
    queue = Names(env.settings.prefix).execution_status
    await env.clients.sqs.send_message(QueueUrl=await env.queue_url(queue),
                                       MessageBody='{"detail-type": "something else"}')
    events = await consumer(env)
    assert await poll_until(events, 1) == 1
    dead = await env.drain(Names.dlq(queue))
    assert len(dead) == 1
    assert dead[0]["MessageAttributes"]["remitflow.reason"]["StringValue"] == "invalid_event"


async def test_rule_matches_only_our_state_machines_and_bad_endings(env: Env) -> None:
    """SUCCEEDED and other accounts' machines never reach the queue (the rule filters)."""
    _, desc = await started_job(env, "REQ-EVT-4")
    other = dict(desc, stateMachineArn=desc["stateMachineArn"] + "-not-ours")
    await publish(env, detail_of(desc, "SUCCEEDED"))
    await publish(env, detail_of(other, "FAILED"))
    events = await consumer(env)
    assert await poll_until(events, 1, timeout_s=3) == 0
