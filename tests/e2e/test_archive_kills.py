"""The archiver under ``kill -9``: every expired job is in the archive exactly once.

Real sweeper processes (``remitflow run sweeper``) archive a batch of TTL expiries
while they are killed: two crash right after an archive write and before the
stream checkpoint (``REMITFLOW_FAULT_POINT=archive.after_put``, after a few
writes), one is ``kill -9``'d from outside mid-run, and a last one finishes. The
bucket keeps every version (Object Lock): a record written twice would show as a
second version of its object, so "exactly once" is one version per expired job.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from shared.aws.dynamo import to_item
from shared.aws.emulator_ttl import trigger
from shared.operations.archive import Archive
from shared.pipeline.jobs import content_hash, iso_at
from tests.helpers import Env, eventually
from tools import procs

pytestmark = pytest.mark.own_stack("kills real sweeper processes; counts the whole archive")

N = 24
FAST = {"REMITFLOW_LEASE_TTL_S": "2", "REMITFLOW_STREAM_FAILOVER_S": "2",
        "REMITFLOW_STREAM_POLL_INTERVAL_S": "0.2", "REMITFLOW_STREAM_IDLE_MAX_S": "0.5",
        "REMITFLOW_STREAM_BATCH_SIZE": "8",
        "REMITFLOW_STREAM_CHECKPOINT_INTERVAL_S": "2", "REMITFLOW_SWEEPER_INTERVAL_S": "5",
        "REMITFLOW_SHUTDOWN_GRACE_S": "5"}


@contextmanager
def sweeper(env: Env, **extra: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``remitflow run sweeper`` for this stack; killed (never drained) at the end."""
    with procs.service_process("sweeper", env.settings.prefix, {**FAST, **extra},
                               log=env.log_for("sweeper")) as p:
        yield p.url, p.proc


async def _finished_jobs(env: Env, tag: str) -> list[str]:
    """N finished remittances, written as the workflow leaves them."""
    ids = [f"REQ-KILL-{tag}-{i:03d}" for i in range(N)]
    now = time.time()
    for request_id in ids:
        payload = json.dumps({"request_id": request_id, "payee_id": f"PAYEE-{tag}",
                              "amount": "10.00", "currency": "EUR"})
        advice = json.dumps({"request_id": request_id, "amount": "10.00", "currency": "EUR",
                             "payee": {"payee_id": f"PAYEE-{tag}", "name": f"Payee {tag}"}})
        await env.clients.dynamodb.put_item(TableName=env.names.remittances, Item=to_item({
            "request_id": request_id, "status": "COMPLETED", "version": 3, "attempt": 1,
            "payload": payload, "payload_sha256": content_hash(payload), "advice": advice,
            "created_at": iso_at(now - 60), "updated_at": iso_at(now),
            "history": [f"{iso_at(now)} done"], "expires_at": int(now) + 86400}))
    return ids


async def _archived(archive: Archive) -> list[str]:
    return await archive.keys("remittances/")


async def _healthy(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(f"{url}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def test_every_expired_job_is_archived_exactly_once_across_kills(env: Env) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    ids = await _finished_jobs(env, tag)
    archive = Archive(env.clients.s3, env.settings.archive_bucket_name)
    assert await asyncio.to_thread(trigger, env.endpoint, env.names.remittances,
                                   time.time() + 2 * 86400) == N
    progress: list[int] = []
    for after in ("3", "5"):                # crash right after the n-th write, mid-batch
        with sweeper(env, REMITFLOW_FAULT_POINT="archive.after_put",
                     REMITFLOW_FAULT_AFTER=after) as (_, proc):
            await eventually(lambda p=proc: asyncio.sleep(0, p.poll() is not None),  # type: ignore[misc]
                             timeout_s=40, what=f"the crash after {after} writes")
            assert proc.returncode == 137
        progress.append(len(await _archived(archive)))
    with sweeper(env) as (url, proc):                     # kill -9 from outside
        await eventually(lambda: _healthy(url), timeout_s=30, what="sweeper up")
        await eventually(lambda: _more_than(archive, progress[-1]), timeout_s=30,
                         what="archiving resumed")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    progress.append(len(await _archived(archive)))
    with sweeper(env):
        await eventually(lambda: _all(archive), timeout_s=40, what=f"all {N} archived")

    assert progress == sorted(progress) and 0 < progress[0] < N, progress
    keys = await _archived(archive)
    assert sorted(k.rsplit("/", 1)[-1].removesuffix(".jsonl.gz") for k in keys) == ids
    versions: dict[str, int] = {}
    async for page in env.clients.s3.get_paginator("list_object_versions").paginate(
            Bucket=archive.bucket, Prefix="remittances/"):
        for v in page.get("Versions", []):
            versions[v["Key"]] = versions.get(v["Key"], 0) + 1
    assert set(versions.values()) == {1}, {k: n for k, n in versions.items() if n != 1}
    for key in keys:
        lines = await archive.get(key)
        assert lines is not None and len(lines) == 1


async def _more_than(archive: Archive, count: int) -> bool:
    return len(await _archived(archive)) > count


async def _all(archive: Archive) -> Any:
    return len(await _archived(archive)) == N
