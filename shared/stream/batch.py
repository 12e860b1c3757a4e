"""What a stream processor is, and how it reports a partial failure."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable

from shared.stream.source import Record


class BatchFailure(Exception):
    """Raised by a processor: records before ``sequence`` are done; retry from it."""

    def __init__(self, sequence: str, cause: BaseException | None = None) -> None:
        super().__init__(f"failed at {sequence}: {cause!r}")
        self.sequence = sequence
        self.cause = cause


Processor = Callable[[list[Record]], Awaitable[str | None]]
"""Handles a batch; returns the sequence number of the first failed record, or None."""
PoisonHandler = Callable[[Record], Awaitable[None]]
AcquiredHook = Callable[[str], Awaitable[None]]
LostHook = Callable[[str, str], Awaitable[None]]


def per_record(processor: Callable[[list[Record]], Awaitable[None]],
               concurrency: int = 1) -> Processor:
    """Adapt a processor that handles records one by one to report the first failure.

    With ``concurrency > 1`` records of different keys run concurrently while the
    records of one key keep their order; a failure is reported at the earliest
    failed record, so the batch is retried from there (records after it that had
    succeeded run again: the processor must be idempotent, as the starter is).
    """
    async def process(records: list[Record]) -> str | None:
        groups: dict[str, list[tuple[int, Record]]] = defaultdict(list)
        for index, record in enumerate(records):
            groups[repr(sorted(record.keys.items()))].append((index, record))
        slots = asyncio.Semaphore(concurrency)
        failures: list[tuple[int, Record, Exception]] = []

        async def run(items: list[tuple[int, Record]]) -> None:
            for index, record in items:
                async with slots:
                    try:
                        await processor([record])
                    except Exception as exc:
                        failures.append((index, record, exc))
                        return

        await asyncio.gather(*(run(items) for items in groups.values()))
        if failures:
            _, record, exc = min(failures, key=lambda f: f[0])
            raise BatchFailure(record.sequence, exc) from exc
        return None
    return process
