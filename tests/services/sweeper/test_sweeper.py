"""The sweeper against the emulator: re-drive, fail, reconcile, read cost, leadership."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.enrichment.service import build as enrichment
from services.sweeper.service import build_sweeper
from shared.aws.dynamo import to_item
from shared.metrics import JOBS, QUEUE_MESSAGES, SWEEPER_LEADER
from shared.operations.reconcile import settle
from shared.pipeline.jobs import Job, JobStore, Status, execution_name
from tests.helpers import (
    Env,
    eventually,
    history,
    job_in,
    message,
    names_of,
    retrying,
    running,
)
from tests.helpers import test_settings as settings_for
from tools.procs import service_process
from tools.stack import KINDS, bootstrap_stack, builder

pytestmark = pytest.mark.own_stack("the sweeper reads and counts whole indexes and every queue")

sweeper_service = builder("sweeper")


# --- retry ------------------------------------------------------------------------------

async def test_transient_failure_is_redriven_and_completes(env: Env) -> None:
    flaky = env.with_settings(faults="transient-once:REQ-X-.*")
    async with running(flaky, enrichment), running(env, sweeper_service):
        await env.send(message("REQ-X-1"))
        job = await job_in(env.store(), "REQ-X-1", "COMPLETED", timeout_s=45)
    assert job.attempt == 2 and job.raw["execution_name"] == "REQ-X-1-a2"
    assert "re-driven by sweeper as attempt 2" in history(job)
    assert json.loads(job.raw["advice"])["request_id"] == "REQ-X-1"
    assert not {"running_job", "retry_job", "failed_job"} & set(job.raw)
    assert sorted(await names_of(env, env.names.enrichment_sm)) == ["REQ-X-1-a1", "REQ-X-1-a2"]


async def test_always_failing_ends_failed_after_max_attempts(env: Env) -> None:
    broken = env.with_settings(faults="transient-always:REQ-BROKEN-.*")
    async with running(broken, enrichment), running(env, sweeper_service):
        await env.send(message("REQ-BROKEN-1"))
        job = await job_in(env.store(), "REQ-BROKEN-1", "FAILED", timeout_s=60)
    assert job.attempt == env.settings.retry.max_attempts == 3
    assert job.raw["failed_job"].startswith("s") and job.raw["failed_at"]
    assert not {"running_job", "retry_job", "next_attempt_at"} & set(job.raw)
    assert "FAILED by sweeper after 3 attempt(s)" in history(job)
    assert sorted(await names_of(env, env.names.enrichment_sm)) == [
        f"REQ-BROKEN-1-a{n}" for n in (1, 2, 3)]


async def test_backoff_is_respected(env: Env) -> None:
    store = env.store()
    later = int(time.time()) + 3600
    await retrying(store, "REQ-LATER", due=later)
    await retrying(store, "REQ-NOW")
    sweeper = await build_sweeper(env.settings, env.clients, KINDS)

    report = await sweeper.sweep_once()
    table = report.tables["remittances"]
    assert (table.redriven, table.scanned_count) == (1, 1), "only the due job is read"
    assert (await store.require("REQ-LATER")).status is Status.RETRY_PENDING
    assert (await store.require("REQ-NOW")).attempt == 2

    report = await sweeper.sweep_once(now=later)
    assert report.tables["remittances"].redriven == 1
    job = await store.require("REQ-LATER")
    assert job.status is Status.RUNNING and job.attempt == 2
    assert sorted(await names_of(env, env.names.enrichment_sm)) == ["REQ-LATER-a2",
                                                                    "REQ-NOW-a2"]


async def test_max_attempts_moves_to_failed_without_a_start(env: Env) -> None:
    store = env.store("notifications")
    await retrying(store, "REQ-DONE-TRYING", attempt=3)
    sweeper = await build_sweeper(env.settings, env.clients, KINDS)
    report = await sweeper.sweep_once()
    assert report.tables["notifications"].failed == 1
    job = await store.require("REQ-DONE-TRYING")
    assert job.status is Status.FAILED and job.attempt == 3
    assert await names_of(env, env.names.notification_sm) == []
    assert report.tables["notifications"].backlog == {"retry": 0, "failed": 1, "running": 0}


# --- read cost ----------------------------------------------------------------------------

async def test_a_sweep_reads_only_the_backlog(env: Env) -> None:
    table = env.names.remittances
    done = [{"request_id": f"REQ-DONE-{n:05d}", "status": "COMPLETED", "version": 3,
             "attempt": 1, "payload": "{}", "advice": "{}"} for n in range(2000)]
    chunks = [done[i:i + 25] for i in range(0, len(done), 25)]

    async def put(chunk: list[dict[str, Any]]) -> None:
        requests: list[Any] = [{"PutRequest": {"Item": to_item(i)}} for i in chunk]
        while requests:
            resp = await env.clients.dynamodb.batch_write_item(RequestItems={table: requests})
            requests = list(resp.get("UnprocessedItems", {}).get(table, []))

    for start in range(0, len(chunks), 10):
        await asyncio.gather(*(put(c) for c in chunks[start:start + 10]))
    store = env.store()
    for n in range(5):
        await retrying(store, f"REQ-RETRY-{n}")
    sweeper = await build_sweeper(env.settings, env.clients, KINDS)

    report = await sweeper.sweep_once()
    remittances = report.tables["remittances"]
    assert (remittances.scanned_count, remittances.count, remittances.redriven) == (5, 5, 5)
    assert remittances.backlog == {"retry": 0, "failed": 0, "running": 5}
    assert remittances.backlog_scanned_count == 5
    assert report.items_read == 10 and report.tables["notifications"].scanned_count == 0
    assert report.as_dict()["items_read"] == 10
    assert JOBS.labels(table=table, state="running")._value.get() == 5
    assert JOBS.labels(table=table, state="retry")._value.get() == 0
    queues = {q for name in (*env.names.queues, env.names.execution_status)
              for q in (name, env.names.dlq(name))}
    assert set(report.queues) == queues and len(queues) == 10
    assert QUEUE_MESSAGES.labels(queue=env.names.remittance_events)._value.get() == 0

    # The gauges keep their own clock (REMITFLOW_QUEUE_DEPTH_INTERVAL_S): the next sweep
    # reads neither the counts nor the queues; a forced one (POST /v1/sweep) reads both.
    again = await sweeper.sweep_once()
    assert not again.gauged and again.items_read == 0 and again.queues == {}
    forced = await sweeper.sweep_once(force=True)
    assert forced.gauged and forced.tables["remittances"].backlog["running"] == 5
    assert set(forced.queues) == queues


# --- reconcile ----------------------------------------------------------------------------

async def overdue(store: JobStore, job: Job) -> Job:
    """Make a RUNNING job look as if it had been running for an hour."""
    await store.dynamodb.update_item(
        TableName=store.table, Key={"request_id": {"S": job.request_id}},
        UpdateExpression="SET running_since = :old",
        ExpressionAttributeValues={":old": {"N": str(int(time.time()) - 3600)}})
    return await store.require(job.request_id)


async def test_reconcile_running_jobs(env: Env) -> None:
    store = env.store()
    settings = env.with_settings(reconcile_after_s=600).settings
    sweeper = await build_sweeper(settings, env.clients, KINDS)
    starter = sweeper.targets["remittances"].starter

    # 1. the workflow succeeded (or rejected) but its final status write was lost
    async with running(env, enrichment):
        await env.send(message("REQ-LOST-WRITE"),
                       dict(message("REQ-LOST-REJECT"), payee_id="PAYEE-9999"))
        done = await job_in(store, "REQ-LOST-WRITE", "COMPLETED")
        await job_in(store, "REQ-LOST-REJECT", "REJECTED")
    for request_id in ("REQ-LOST-WRITE", "REQ-LOST-REJECT"):
        await env.clients.dynamodb.update_item(
            TableName=store.table, Key={"request_id": {"S": request_id}},
            UpdateExpression="SET #s = :running, running_job = :shard, running_since = :old "
                             "REMOVE advice, last_error", ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":running": {"S": "RUNNING"}, ":shard": {"S": "s0"},
                                       ":old": {"N": str(int(time.time()) - 3600)}})
    # 2. RUNNING written, then a crash before StartExecution: no execution exists
    job = await store.create("REQ-NEVER-STARTED", "{}", "x")
    assert job is not None
    name = execution_name("REQ-NEVER-STARTED", 1)
    await store.transition(job, Status.RUNNING, sort_value=int(time.time()) - 3600, set_={
        "attempt": 1, "execution_name": name, "execution_arn": starter.execution_arn(name)})
    # 3. still running (waiting for a task worker), 4. recent: not even looked at
    for request_id in ("REQ-STILL-RUNNING", "REQ-RECENT"):
        created = await store.create(request_id, "{}", "x")
        assert created is not None
        began = await starter.begin(created)
        assert began is not None
        if request_id != "REQ-RECENT":
            await overdue(store, began)
    swept_at = int(time.time())
    report = await sweeper.sweep_once()
    table = report.tables["remittances"]
    assert table.reconciled == {"succeeded": 2, "missing": 1, "running": 1}
    assert table.scanned_count == 4, "the recent RUNNING job is not read"

    lost = await store.require("REQ-LOST-WRITE")
    assert lost.status is Status.COMPLETED and lost.raw["advice"] == done.raw["advice"]
    assert "running_job" not in lost.raw and "reconciled by sweeper" in history(lost)
    rejected = await store.require("REQ-LOST-REJECT")
    assert rejected.status is Status.REJECTED and "UnknownPayee" in rejected.raw["last_error"]
    parked = await store.require("REQ-NEVER-STARTED")
    assert parked.status is Status.RETRY_PENDING and parked.raw["retry_job"].startswith("s")
    assert int(parked.raw["next_attempt_at"]) >= swept_at, "parked for a retry, not in the past"
    assert parked.raw["last_error"] == "execution never started (reconciled)"
    assert (await store.require("REQ-STILL-RUNNING")).status is Status.RUNNING
    assert (await store.require("REQ-RECENT")).status is Status.RUNNING


async def test_a_lost_start_is_made_long_before_the_reconcile(env: Env) -> None:
    """A process killed between the RUNNING write and StartExecution: the sweep starts
    the attempt's own execution once the job is past the start check (2 minutes by
    default), not a workflow timeout later; a job whose execution exists is left."""
    store = env.store()
    settings = env.with_settings(reconcile_after_s=1200, start_check_after_s=120).settings
    sweeper = await build_sweeper(settings, env.clients, KINDS)
    starter = sweeper.targets["remittances"].starter
    lost = await store.create("REQ-START-LOST", "{}", "x")
    assert lost is not None
    name = execution_name("REQ-START-LOST", 1)
    await store.transition(lost, Status.RUNNING, sort_value=int(time.time()) - 300, set_={
        "attempt": 1, "execution_name": name, "execution_arn": starter.execution_arn(name)})
    fine = await store.create("REQ-START-FINE", "{}", "x")
    assert fine is not None
    began = await starter.begin(fine)
    assert began is not None
    await store.dynamodb.update_item(
        TableName=store.table, Key={"request_id": {"S": "REQ-START-FINE"}},
        UpdateExpression="SET running_since = :t",
        ExpressionAttributeValues={":t": {"N": str(int(time.time()) - 300)}})

    report = await sweeper.sweep_once()

    assert report.tables["remittances"].reconciled == {"started_late": 1}
    assert sorted(await names_of(env, env.names.enrichment_sm)) == sorted(
        [name, execution_name("REQ-START-FINE", 1)])
    job = await store.require("REQ-START-LOST")
    assert (job.status, job.attempt) == (Status.RUNNING, 1)
    again = await sweeper.sweep_once()
    assert again.tables["remittances"].reconciled == {}, "an execution exists now"


async def test_a_job_whose_stream_record_was_lost_is_started(env: Env) -> None:
    """RECEIVED jobs sit in the running index: if no starter ever saw their stream
    record (lost past retention), the sweeper starts them once they are overdue."""
    store = env.store()
    sweeper = await build_sweeper(env.with_settings(reconcile_after_s=600).settings,
                                  env.clients, KINDS)
    stale = await store.create("REQ-NEVER-SEEN", json.dumps(message("REQ-NEVER-SEEN")), "x")
    assert stale is not None and stale.raw["running_job"].startswith("s")
    early = await sweeper.sweep_once()
    assert early.tables["remittances"].reconciled == {}
    report = await sweeper.sweep_once(now=time.time() + 3600)
    assert report.tables["remittances"].reconciled == {"not_started": 1}
    job = await store.require("REQ-NEVER-SEEN")
    assert job.status is Status.RUNNING and job.attempt == 1
    assert "stream record not processed" in history(job)
    assert await names_of(env, env.names.enrichment_sm) == ["REQ-NEVER-SEEN-a1"]


@pytest.mark.parametrize(("status", "output", "to", "sets"), [
    ("FAILED", None, Status.RETRY_PENDING, {"last_error": "execution ended FAILED (reconciled)"}),
    ("TIMED_OUT", None, Status.RETRY_PENDING,
     {"last_error": "execution ended TIMED_OUT (reconciled)"}),
    ("ABORTED", None, Status.RETRY_PENDING,
     {"last_error": "execution ended ABORTED (reconciled)"}),
    ("SUCCEEDED", '{"result": {"delivery_id": "d-1"}}', Status.COMPLETED,
     {"delivery_id": "d-1"}),
    ("SUCCEEDED", '{"error": {"Error": "remitflow.Transient", "Cause": "503"}}',
     Status.RETRY_PENDING, {"last_error": "503"}),
    ("SUCCEEDED", '{"error": {"Error": "remitflow.Business.Bad"}}', Status.REJECTED,
     {"last_error": "remitflow.Business.Bad"}),
    ("SUCCEEDED", '{"superseded": {}}', Status.RETRY_PENDING,
     {"last_error": "execution was superseded (reconciled)"}),
])
def test_settle(status: str, output: str | None, to: Status, sets: dict[str, Any]) -> None:
    assert settle(status, output, {"delivery_id": "delivery_id"}) == (to, sets)


# --- leadership ---------------------------------------------------------------------------

async def test_one_leader_at_a_time(env: Env) -> None:
    # A lease that outlives the test: with the suite's 5 s, a sweep that took 3 s on a
    # loaded machine let the lease lapse before the second sweeper tried.
    env = env.with_settings(lease_ttl_s=60)
    one = await build_sweeper(env.settings, env.clients, KINDS)
    two = await build_sweeper(env.settings, env.clients, KINDS)
    assert one.leases is not None and two.leases is not None
    two.leases.owner = one.leases.owner + "-other"
    await retrying(env.store(), "REQ-LEAD-1")

    assert (await one.sweep_once()).swept
    assert SWEEPER_LEADER._value.get() == 1
    skipped = await two.sweep_once()
    assert not skipped.swept and not skipped.leader and SWEEPER_LEADER._value.get() == 0
    assert (await one.sweep_once()).leader, "renewal by the holder"
    task = asyncio.create_task(one.run())
    one.shutdown()
    await task  # releases the lease on the way out
    assert (await two.sweep_once()).swept


@contextmanager
def sweeper_process(env: Env, log: Path, **extra: str) -> Iterator[tuple[str,
                                                                      subprocess.Popen[bytes]]]:
    with service_process("sweeper", env.settings.prefix,
                         {"REMITFLOW_SHUTDOWN_GRACE_S": "5", **extra}, log=log,
                         graceful=True) as p:
        yield p.url, p.proc


async def test_two_active_sweeper_processes_redrive_each_job_once(env: Env,
                                                                   tmp_path: Path) -> None:
    # No task worker takes the 40 tasks: without the back-pressure limit (tested in
    # tests/shared/pipeline/test_backpressure.py) both sweepers race for every job.
    extra = {"REMITFLOW_SWEEPER_LEADER_LEASE": "false", "REMITFLOW_SWEEPER_INTERVAL_S": "0.2",
             "REMITFLOW_TASK_BACKLOG_MAX": "0"}
    # Their executions then wait on a task nobody takes: a heartbeat timeout longer than
    # the test keeps them RUNNING (with the suite's 15 s, a slow machine saw one time out
    # back to RETRY_PENDING before the final check).
    await bootstrap_stack(settings_for(env.settings.prefix, task_heartbeat_s=60),
                          env.clients)
    with sweeper_process(env, tmp_path / "a.log", **extra) as (url_a, proc_a), \
            sweeper_process(env, tmp_path / "b.log", **extra) as (url_b, proc_b):
        async with httpx.AsyncClient(timeout=5) as http:
            async def ready() -> bool:
                try:
                    return all([(await http.get(f"{u}/readyz")).status_code == 200
                                for u in (url_a, url_b)])
                except httpx.TransportError:
                    return False

            await eventually(ready, what="both sweepers ready")
            store = env.store()
            ids = [f"REQ-RACE-{n:03d}" for n in range(40)]
            due = int(time.time()) + 2   # both sweepers see the whole backlog fall due at once
            await asyncio.gather(*(retrying(store, i, due=due) for i in ids))

            async def all_redriven() -> bool:
                jobs = await asyncio.gather(*(store.require(i) for i in ids))
                return all(j.status is Status.RUNNING for j in jobs)

            await eventually(all_redriven, timeout_s=30, what="every job re-driven")
            # Both sweep again after that (their last-success clocks pass this moment):
            # the counters below must not have moved for those extra sweeps.
            settled_at = time.time()

            async def both_swept_again() -> list[str] | None:
                texts = [(await http.get(f"{u}/metrics")).text for u in (url_a, url_b)]
                done = all(_metric(t, "remitflow_sweeper_last_success_timestamp_seconds")
                           > settled_at + 0.5 for t in texts)
                return texts if done else None

            texts = await eventually(both_swept_again, what="two more sweeps by each")
        assert proc_a.poll() is None and proc_b.poll() is None
    for job in await asyncio.gather(*(store.require(i) for i in ids)):
        assert job.status is Status.RUNNING and job.attempt == 2, job.public()
    names = await names_of(env, env.names.enrichment_sm)
    assert sorted(names) == sorted(f"{i}-a2" for i in ids), "exactly one start per job"
    redrives = [_metric(t, "remitflow_sweeper_redrives_total", env.names.remittances)
                for t in texts]
    conflicts = sum((tmp_path / f).read_text().count('"sweeper.conflict"')
                    for f in ("a.log", "b.log"))
    assert sum(redrives) == len(ids), (redrives, conflicts)
    assert all(_metric(t, "remitflow_sweeper_last_success_timestamp_seconds") > 0
               for t in texts), "both sweepers were active"


def _metric(text: str, name: str, table: str | None = None) -> float:
    label = f'{{table="{table}"}}' if table else ""
    match = re.search(rf"^{re.escape(name + label)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0
