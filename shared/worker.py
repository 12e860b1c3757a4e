"""The worker contract, the poll ticker and a test-only crash hook."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from shared.retry import sleep_or_stop


class Worker(Protocol):
    """A long-running part of a service.

    ``run()`` returns only when in-flight work is finished or handed back, and
    raises ``RuntimeError`` when called a second time; ``shutdown()`` is
    idempotent and may be called before ``run()``. ``run_once()`` is one
    iteration of the loop ``run()`` repeats (a receive, a lease round, a sweep),
    so tests drive a worker step by step instead of sleeping. ``healthy`` feeds
    ``/readyz``.
    """

    name: str

    @property
    def healthy(self) -> bool: ...

    async def run(self) -> None: ...

    async def run_once(self) -> object: ...

    def shutdown(self) -> None: ...


class Lifecycle:
    """The part every worker shares: a stop flag and the refusal of a second start.

    ``shutdown()`` is idempotent and safe before ``run()``; ``run()`` calls
    :meth:`_begin` first, which raises ``RuntimeError`` the second time.
    """

    name: str = "worker"

    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self._started = False

    def shutdown(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> asyncio.Event:
        """Set by :meth:`shutdown`; for helpers that wait on the worker's behalf."""
        return self._stop

    def _begin(self) -> None:
        if self._started:
            raise RuntimeError(f"{self.name}: already started")
        self._started = True


async def ticker(interval_s: float, stop: asyncio.Event) -> AsyncIterator[int]:
    """Yield immediately, then every ``interval_s`` until ``stop`` is set."""
    n = 0
    while not stop.is_set():
        yield n
        n += 1
        await sleep_or_stop(stop, interval_s)
