"""Stream-consumer test support: an injected clock, a recording sink, consumers to kill."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from shared.stream.batch import Processor
from shared.stream.consumer import StreamConsumer, StreamOptions
from shared.stream.leases import ShardLeaseTable
from shared.stream.source import Record
from tests.helpers import Env, eventually

FAILOVER_S = 30.0


class Clock:
    """The consumers' monotonic clock: moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Sink:
    """Records what each consumer delivered, in order; optionally fails some keys."""

    delivered: list[tuple[str, str, str]] = field(default_factory=list)   # consumer, seq, key
    events: list[tuple[str, str, str]] = field(default_factory=list)      # consumer, what, shard
    failing: set[str] = field(default_factory=set)
    poisoned: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None

    def processor(self, name: str) -> Processor:
        async def process(records: list[Record]) -> str | None:
            if self.gate is not None:
                await self.gate.wait()
            for r in records:
                if key(r) in self.failing:
                    return r.sequence
                self.delivered.append((name, r.sequence, key(r)))
            return None
        return process

    def seqs(self) -> Counter[str]:
        return Counter(seq for _, seq, _ in self.delivered)


def key(record: Record) -> str:
    return str(record.keys["request_id"]["S"])


def make(env: Env, source: Any, name: str, processor: Processor, clock: Clock,
         sink: Sink | None = None, **kw: Any) -> StreamConsumer:
    async def acquired(shard: str) -> None:
        if sink:
            sink.events.append((name, "acquired", shard))

    async def lost(shard: str, reason: str) -> None:
        if sink:
            sink.events.append((name, f"lost:{reason}", shard))

    leases = ShardLeaseTable(env.clients.dynamodb, env.names.leases, env.names.remittances, name)
    hooks: dict[str, Any] = dict(clock=clock, on_shard_acquired=acquired, on_shard_lost=lost)
    if "on_poison" in kw:
        hooks["on_poison"] = kw.pop("on_poison")
    options = StreamOptions(failover_s=FAILOVER_S, renew_s=0.05, sync_s=0.1, poll_s=0.02,
                            idle_max_s=0.1, retry_base_s=0.01, **kw)
    return StreamConsumer(source=source, leases=leases, table=env.names.remittances,
                          processor=processor, options=options, **hooks)


@asynccontextmanager
async def started(*consumers: StreamConsumer) -> AsyncIterator[dict[str, asyncio.Task[None]]]:
    tasks = {c.leases.owner: asyncio.create_task(c.run()) for c in consumers}
    try:
        yield tasks
    finally:
        for c in consumers:
            c.shutdown()
        await asyncio.wait_for(asyncio.gather(*tasks.values(), return_exceptions=True), 15)


def kill(tasks: dict[str, asyncio.Task[None]], name: str) -> None:
    """Like ``kill -9`` for one in-process consumer: cancelled, nothing released."""
    tasks[name].cancel()


async def until(probe: Callable[[], bool], what: str, timeout_s: float = 15) -> None:
    async def check() -> bool:
        return probe()
    await eventually(check, timeout_s=timeout_s, what=what)


