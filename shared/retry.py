"""The one retry helper: jittered exponential backoff that stops when shutdown is asked.

Every "try again later" in the mechanism goes through here, so the numbers live
in one :class:`Backoff` per caller and no loop that must end on SIGTERM sleeps
with a bare ``asyncio.sleep``: :meth:`Backoff.sleep` returns early (``True``)
when the stop event is set, and :func:`retry` raises :class:`RetryStopped`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def backoff_s(attempt: int, base_s: float, cap_s: float, *, jitter: bool = True) -> float:
    """Exponential backoff for ``attempt`` (1-based), capped, with full jitter on the top half."""
    delay = float(min(cap_s, base_s * (2 ** max(0, attempt - 1))))
    if jitter and delay > 0:
        delay = delay / 2 + random.uniform(0, delay / 2)
    return delay


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; return True when ``stop`` was set meanwhile."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        return False
    return True


class RetryStopped(Exception):
    """Shutdown was requested while waiting to retry; the last error is the cause."""


@dataclass(frozen=True)
class Backoff:
    """A retry schedule: ``base_s`` doubling up to ``cap_s``, jittered."""

    base_s: float
    cap_s: float
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        return backoff_s(attempt, self.base_s, self.cap_s, jitter=self.jitter)

    async def sleep(self, stop: asyncio.Event, attempt: int) -> bool:
        """Wait before retry number ``attempt``; True when ``stop`` cut the wait short."""
        return await sleep_or_stop(stop, self.delay(attempt))


async def retry(op: Callable[[], Awaitable[T]], *, backoff: Backoff, stop: asyncio.Event,
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
            if await backoff.sleep(stop, failures):
                raise RetryStopped(str(exc)) from exc
