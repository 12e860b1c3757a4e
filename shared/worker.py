"""Small pieces every worker shares: the ticker, backoff with jitter, a test-only crash hook."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from typing import Protocol


class Worker(Protocol):
    """A long-running part of a service.

    ``run()`` returns only when in-flight work is finished or handed back;
    ``shutdown()`` is idempotent and may be called before ``run()``.
    """

    name: str

    async def run(self) -> None: ...

    def shutdown(self) -> None: ...


async def ticker(interval_s: float, stop: asyncio.Event) -> AsyncIterator[int]:
    """Yield immediately, then every ``interval_s`` until ``stop`` is set."""
    n = 0
    while not stop.is_set():
        yield n
        n += 1
        await sleep_or_stop(stop, interval_s)


def backoff_s(attempt: int, base_s: float, cap_s: float, *, jitter: bool = True) -> float:
    """Exponential backoff for ``attempt`` (1-based), capped, with full jitter on the top half."""
    delay = float(min(cap_s, base_s * (2 ** max(0, attempt - 1))))
    if jitter and delay > 0:
        delay = delay / 2 + random.uniform(0, delay / 2)
    return delay


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; return True when ``stop`` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


def fault_point(name: str) -> None:
    """Test-only crash hook: ``REMITFLOW_FAULT_POINT=<name>`` kills the process right here.

    Used by the crash-safety tests to prove that a ``kill -9`` at this exact point
    loses nothing. ``os._exit`` skips every cleanup, like SIGKILL.
    """
    if os.environ.get("REMITFLOW_FAULT_POINT") == name:
        os._exit(137)
