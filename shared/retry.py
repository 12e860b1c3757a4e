"""The one retry helper: a :class:`~shared.schedule.Schedule` waited on stop-aware.

Every "try again later" in the mechanism goes through here, so no loop that must end
on SIGTERM sleeps with a bare ``asyncio.sleep``: :func:`pause` returns early
(``True``) when the stop event is set, and :func:`retry` raises :class:`RetryStopped`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.schedule import Schedule

T = TypeVar("T")


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; return True when ``stop`` was set meanwhile."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        return False
    return True


async def pause(stop: asyncio.Event, schedule: Schedule, attempt: int) -> bool:
    """Wait ``schedule``'s delay after failure ``attempt``; True when ``stop`` cut it short."""
    return await sleep_or_stop(stop, schedule.delay(attempt))


class RetryStopped(Exception):
    """Shutdown was requested while waiting to retry; the last error is the cause."""


async def retry(op: Callable[[], Awaitable[T]], *, backoff: Schedule, stop: asyncio.Event,
                retryable: Callable[[Exception], bool] = lambda _: True,
                give_up: Callable[[int], bool] = lambda _: False,
                on_failure: Callable[[int, Exception], None] | None = None) -> T:
    """Run ``op`` until it succeeds, a failure is not ``retryable``, or we must stop.

    Args:
        op: the operation; called again from scratch after each failure.
        backoff: the wait before each retry.
        stop: when set, the wait ends and :class:`RetryStopped` is raised.
        retryable: failures for which this returns False are raised at once.
        give_up: called with the number of failures so far; True re-raises the last.
        on_failure: observes each failure (count, error) before the wait: log, metric.
    """
    failures = 0
    while True:
        try:
            return await op()
        except Exception as exc:
            failures += 1
            if not retryable(exc) or give_up(failures):
                raise
            if on_failure is not None:
                on_failure(failures, exc)
            if await pause(stop, backoff, failures):
                raise RetryStopped(str(exc)) from exc
