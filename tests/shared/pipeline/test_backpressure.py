"""Back-pressure: starts wait for room in the task queue; nothing is lost or started twice.

A burst bigger than the task queue budget leaves jobs ``RECEIVED`` (the stream
starter waits inside its processor, so the shard is not checkpointed past them);
once task workers take tasks, every job is started, once, as attempt 1. The
sweeper, asked to start overdue ``RECEIVED`` jobs while the queue is full, leaves
them for a later sweep instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from services.enrichment.service import build
from services.sweeper.service import build_sweeper
from shared.metrics import ADMISSION_READS
from shared.pipeline.tasks import TaskWorker
from tests.helpers import Env, eventually, message, names_of
from tools.demo import generate_messages
from tools.stack import KINDS

pytestmark = pytest.mark.own_stack("counts every job and execution under a start budget")


async def statuses(env: Env, ids: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for rid in ids:
        job = await env.store().get(rid)
        key = job.status.value if job else "missing"
        out[key] = out.get(key, 0) + 1
    return out


async def test_a_burst_waits_received_and_every_job_starts_once(env: Env) -> None:
    env = env.with_settings(task_backlog_max=3)
    burst = generate_messages(12, prefix="REQ-BURST")
    ids = [m["request_id"] for m in burst]
    task_queue = KINDS[0].names(env.settings.prefix).task_queue
    reads = ADMISSION_READS.labels(queue=task_queue)
    parts = await build(env.settings, env.clients)
    tasks = next(w for w in parts.workers if isinstance(w, TaskWorker))
    others = [w for w in parts.workers if w is not tasks]
    running = [asyncio.create_task(w.run()) for w in others]
    try:
        await env.send(*[json.dumps(m) for m in burst])

        async def held() -> dict[str, int] | None:
            seen = await statuses(env, ids)
            return seen if seen.get("RUNNING") == 3 and seen.get("RECEIVED") == 9 else None

        await eventually(held, what="3 started, 9 waiting RECEIVED")
        before = reads._value.get()
        await eventually(lambda: _true(reads._value.get() >= before + 3),
                         what="the gate looked at the queue three more times")
        assert await statuses(env, ids) == {"RUNNING": 3, "RECEIVED": 9}
        assert len(await names_of(env, env.names.enrichment_sm)) == 3

        running.append(asyncio.create_task(tasks.run()))

        async def done() -> dict[str, int] | None:
            seen = await statuses(env, ids)
            return seen if seen == {"COMPLETED": 12} else None

        await eventually(done, timeout_s=60, what="all 12 COMPLETED")
    finally:
        for w in parts.workers:
            w.shutdown()
        await asyncio.wait(running, timeout=15)
    names = sorted(await names_of(env, env.names.enrichment_sm))
    assert names == sorted(f"{rid}-a1" for rid in ids)
    for rid in ids:
        assert (await env.store().require(rid)).attempt == 1


async def test_the_sweeper_leaves_overdue_received_jobs_while_the_queue_is_full(
        env: Env) -> None:
    env = env.with_settings(task_backlog_max=2, reconcile_after_s=600)
    store = env.store()
    sweeper = await build_sweeper(env.settings, env.clients, KINDS)
    for rid in ("REQ-WAIT-1", "REQ-WAIT-2"):
        assert await store.create(rid, json.dumps(message(rid)), "x") is not None
    url = await env.queue_url(KINDS[0].names(env.settings.prefix).task_queue)
    for n in range(2):  # the task queue is full: two tasks nobody received
        await env.clients.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}))
    report = await sweeper.sweep_once(now=time.time() + 3600)
    table = report.tables["remittances"]
    assert table.deferred == 2 and table.reconciled == {}
    assert await statuses(env, ["REQ-WAIT-1", "REQ-WAIT-2"]) == {"RECEIVED": 2}
    assert await names_of(env, env.names.enrichment_sm) == []

    await env.drain(KINDS[0].names(env.settings.prefix).task_queue)  # workers took them

    async def started() -> Any:
        report = await sweeper.sweep_once(now=time.time() + 3600)
        return report.tables["remittances"].reconciled.get("not_started", 0) or None

    await eventually(started, what="the sweeper starts them once there is room")
    names = sorted(await names_of(env, env.names.enrichment_sm))
    assert names == ["REQ-WAIT-1-a1", "REQ-WAIT-2-a1"]


async def _true(value: bool) -> bool:
    return value
