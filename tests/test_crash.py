"""Crash safety: ``kill -9`` at each explicit crash point loses nothing and repeats no effect.

Each case runs a real service process with ``REMITFLOW_FAULT_POINT`` set: the process
dies (``os._exit``, as abrupt as SIGKILL) the first time it reaches that point. A
fresh process then takes over, and the test checks the end state, the executions
started and the deliveries made.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from services.demo import generate_messages
from tests.conftest import free_port
from tests.helpers import Env, eventually, job_in

FAST = {"REMITFLOW_RECEIVE_WAIT_S": "1", "REMITFLOW_TASK_HEARTBEAT_S": "1",
        "REMITFLOW_LEASE_TTL_S": "3", "REMITFLOW_STREAM_POLL_INTERVAL_S": "0.2",
        "REMITFLOW_SHUTDOWN_GRACE_S": "5", "REMITFLOW_SWEEPER_INTERVAL_S": "1",
        "REMITFLOW_RETRY_BACKOFF_BASE_S": "1", "REMITFLOW_RETRY_BACKOFF_CAP_S": "2",
        "REMITFLOW_VISIBILITY_TIMEOUT_S": "5", "REMITFLOW_WEBHOOK_ALLOW_PRIVATE": "true"}


@contextmanager
def process(env: Env, service: str, **extra: str) -> Iterator[subprocess.Popen[bytes]]:
    proc_env = {**os.environ, **FAST, "REMITFLOW_PREFIX": env.settings.prefix,
                "REMITFLOW_HTTP_PORT": str(free_port()), "REMITFLOW_HTTP_HOST": "127.0.0.1",
                **extra}
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "run", service],
                            env=proc_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


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
