"""Every worker keeps the one contract (shared/worker.py): shutdown before run is safe,
run then returns, a second run is refused, and healthy/run_once exist."""

from __future__ import annotations

import asyncio

from tests.helpers import Env
from tools.stack import SERVICES, builder


async def test_every_worker_of_every_service_keeps_the_contract(env: Env) -> None:
    seen = []
    for service in SERVICES:
        parts = await builder(service.name)(env.settings, env.clients)
        for worker in parts.workers:
            worker.shutdown()
            worker.shutdown()                      # idempotent
            await asyncio.wait_for(worker.run(), timeout=15)   # stopped before it began
            try:
                await worker.run()
            except RuntimeError as exc:
                assert "already started" in str(exc)
            else:
                raise AssertionError(f"{worker.name}: a second run() was accepted")
            assert isinstance(worker.healthy, bool) and callable(worker.run_once)
            seen.append(worker.name)
    assert len(seen) >= 7, seen   # intake, stream, tasks per job service; sweeper, events
