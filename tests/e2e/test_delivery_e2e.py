"""End to end: a webhook receiver (its own process) down for a while, then back.

The production webhook schedule runs compressed (``dev_time_scale``), as in
``remitflow dev``: the receiver answers 503 for longer than the first three delays,
then 200. The notification must arrive exactly once, with one ``webhook-id`` and
a valid signature (the receiver verifies it with the ``standardwebhooks``
package), and the job's history must show every attempt.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from services.enrichment.service import build as build_enrichment
from services.notification.service import build as build_notification
from shared.schedule import parse_schedule
from tests.helpers import WEBHOOK_SECRET as SECRET
from tests.helpers import Env, example, free_port, job_in, point_webhook_payee_at, running
from tools.stack import builder

pytestmark = pytest.mark.own_stack(
    "runs the pipeline's workers over "
    "the whole queues and counts deliveries")

SCHEDULE = "5s,5m,30m,2h,5h,10h,10h"   # Standard Webhooks, after the first attempt
SCALE = 300.0                          # 5 min → 1 s, 30 min → 6 s, 2 h → 24 s
DOWN_S = 20.0                          # longer than the first three delays (7 s) plus the
                                       # sweeper's re-drive latencies (13 s: a loaded machine
                                       # was 3 s late at 14), shorter than the fourth (31 s)


class ReceiverProcess:
    def __init__(self, port: int) -> None:
        self.port = port

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/received",
                                    timeout=5) as resp:
            data: dict[str, Any] = json.load(resp)
            return data


@pytest.fixture
def receiver_process() -> Iterator[ReceiverProcess]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tools.webhook_receiver", "--secret", SECRET,
                             "--port", str(port), "--down-for-s", str(DOWN_S)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and "listening" in proc.stdout.readline()
        yield ReceiverProcess(port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_receiver_down_then_up_gets_it_exactly_once(
        env: Env, receiver_process: ReceiverProcess) -> None:
    assert sum(parse_schedule(SCHEDULE).delays[:3]) / SCALE < DOWN_S
    env = env.with_settings(retry_schedules={"webhook": SCHEDULE}, dev_time_scale=SCALE)

    class Target:
        port = receiver_process.port

    await point_webhook_payee_at(env, Target())  # type: ignore[arg-type]
    async with running(env, build_enrichment), running(env, build_notification), \
            running(env, builder("sweeper")):
        await env.send(example("settled-jpy-wire.json"))
        job = await job_in(env.store("notifications"), "REQ-2026-000003", "SENT",
                           timeout_s=90)
    state = receiver_process.state()
    assert state["rejected"] == 0, "every signature verified"
    assert state["by_id"] == {job.raw["webhook_id"]: 1}, "delivered exactly once"
    assert state["received"][0]["id"] == job.raw["delivery_id"]
    assert state["refused"] >= 3
    assert job.attempt >= 4, job.raw["history"]
    lines = job.raw["history"]
    for n in range(1, job.attempt):
        assert any(f"attempt {n} failed: webhook: HTTP 503" in line for line in lines), lines
        assert any(f"attempt {n + 1}" in line and ("started" in line or "re-driven" in line)
                   for line in lines), lines
    assert not any(f"attempt {job.attempt} failed" in line for line in lines)
