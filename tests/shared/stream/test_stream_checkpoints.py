"""Coalesced checkpoints: fewer lease writes under a burst, nothing lost after a crash.

The lease table is the emulator's real DynamoDB table; the stream is
:class:`~shared.stream.memory.MemoryStream` (records put exactly when the test says).
A crash is a cancelled ``run()``; expiry is an injected clock (``tests/shared/stream/support.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from shared.metrics import STREAM_LEASE_WRITES
from shared.retry import sleep_or_stop
from shared.stream import reader
from shared.stream.batch import Processor
from shared.stream.consumer import StreamConsumer, StreamOptions
from shared.stream.leases import TRIM_HORIZON, ShardLeaseTable
from shared.stream.memory import MemoryStream
from shared.stream.source import Record
from tests.helpers import Env, eventually
from tests.shared.stream.support import FAILOVER_S, Clock, Sink, started, until

pytestmark = pytest.mark.own_stack("counts the writes to the leases table")


def consumer(env: Env, stream: MemoryStream, name: str, sink: Sink, clock: Clock,
             processor: Processor | None = None, **kw: Any) -> StreamConsumer:
    options: dict[str, Any] = dict(failover_s=FAILOVER_S, renew_s=0.05, sync_s=0.1,
                                   poll_s=0.02, idle_max_s=0.1, retry_base_s=0.01)
    leases = ShardLeaseTable(env.clients.dynamodb, env.names.leases, env.names.remittances, name)
    return StreamConsumer(source=stream, leases=leases, table=env.names.remittances,
                          processor=processor or sink.processor(name), clock=clock,
                          options=StreamOptions(**{**options, **kw}))


def writes(env: Env, kind: str) -> float:
    return float(STREAM_LEASE_WRITES.labels(table=env.names.remittances, kind=kind)._value.get())


async def checkpoint_of(c: StreamConsumer) -> str:
    return (await c.leases.current())[0].checkpoint


async def burst(env: Env, interval_s: float) -> tuple[int, float]:
    """60 records read 5 at a time (12 batches): (batches, lease writes while reading)."""
    stream, sink, clock = MemoryStream(shards=1), Sink(), Clock()
    calls = 0
    inner = sink.processor("C")

    async def counted(records: list[Record]) -> str | None:
        nonlocal calls
        calls += 1
        return await inner(records)

    c = consumer(env, stream, "C", sink, clock, counted, batch_size=5, renew_s=3.0,
                 checkpoint_interval_s=interval_s)
    async with started(c):
        await until(lambda: len(c.held) == 1, "C holds the shard")
        before = writes(env, "checkpoint") + writes(env, "renew")
        for i in range(60):
            stream.put(f"B{i}")
        await until(lambda: len(sink.seqs()) == 60, "60 delivered")
        during = writes(env, "checkpoint") + writes(env, "renew") - before
        last = stream.records()[-1].sequence

        async def current() -> bool:
            return await checkpoint_of(c) == last
        await eventually(current, timeout_s=10,
                         what="the last batch checkpointed once due, while idle")
    return calls, during


async def test_a_burst_makes_far_fewer_lease_writes_than_batches(env: Env) -> None:
    every_batch, writes_each = await burst(env, 0.0)
    assert every_batch >= 12 and writes_each >= every_batch, "interval 0: one write per batch"
    batches, coalesced = await burst(env, 2.0)
    assert batches >= 12
    assert coalesced <= 3, f"{coalesced} lease writes for {batches} batches"


async def test_a_crash_before_the_checkpoint_redelivers_and_loses_nothing(env: Env) -> None:
    stream, sink, clock = MemoryStream(shards=1), Sink(), Clock()
    # Renewals (which would carry the checkpoint) and checkpoints both far away.
    crashing = consumer(env, stream, "A", sink, clock, renew_s=20.0, checkpoint_interval_s=60)
    heir = consumer(env, stream, "H", sink, clock, checkpoint_interval_s=60)
    async with started(crashing) as tasks:
        await until(lambda: len(crashing.held) == 1, "A holds the shard")
        for i in range(10):
            stream.put(f"K{i}")
        await until(lambda: len(sink.seqs()) == 10, "A processed 10")
        assert await checkpoint_of(crashing) == TRIM_HORIZON, "not yet checkpointed"
        tasks["A"].cancel()              # kill -9: nothing written, nothing released
        async with started(heir):
            await until(lambda: heir.ticks >= 2, "H observed A's lease")
            clock.advance(FAILOVER_S)
            await until(lambda: len(heir.held) == 1, "H took the expired lease")
            await until(lambda: sum(1 for c, _, _ in sink.delivered if c == "H") == 10,
                        "H re-delivered the 10 un-checkpointed records")
            for i in range(10, 15):
                stream.put(f"K{i}")
            await until(lambda: len(sink.seqs()) == 15, "and the records after them")
        # H's graceful shutdown wrote what it processed in its release.
        lease = (await heir.leases.current())[0]
        assert lease.owner is None and lease.checkpoint == stream.records()[-1].sequence
    redelivered = [s for c, s, _ in sink.delivered if c == "H"]
    assert redelivered[:10] == [r.sequence for r in stream.records()[:10]]
    assert set(sink.seqs()) == {r.sequence for r in stream.records()}, "a record was lost"


async def test_after_records_the_reader_keeps_polling_then_backs_off(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Low traffic, low latency: for ``busy_window_s`` after a read with records the
    shard is read every ``poll_s`` (a record waits at most that); once the window is
    over it backs off to ``idle_max_s`` again (cheap when idle).

    The reader's own waits are what is asserted (each wait it asks for, and when), not
    a count of reads per wall-clock second: on a loaded two-core machine a 0.05 s wait
    can take five times that, and a read count said 4 where the policy was right."""
    waits: list[tuple[float, float]] = []
    real_sleep = sleep_or_stop

    async def recorded(stop: asyncio.Event, seconds: float) -> bool:
        waits.append((time.monotonic(), seconds))
        return await real_sleep(stop, seconds)

    monkeypatch.setattr(reader, "sleep_or_stop", recorded)
    stream, sink, clock = MemoryStream(shards=1), Sink(), Clock()
    inner, first_at = sink.processor("P"), []

    async def stamped(records: list[Record]) -> str | None:
        first_at.append(time.monotonic())
        return await inner(records)

    c = consumer(env, stream, "P", sink, clock, stamped, poll_s=0.05, idle_max_s=0.8,
                 busy_window_s=1.5, renew_s=1.0)
    async with started(c):
        await until(lambda: len(c.held) == 1, "P holds the shard")
        stream.put("P0")
        await until(lambda: len(sink.seqs()) == 1, "first record")
        await asyncio.sleep(3.0)                     # the window (1.5 s), then backing off
        before = stream.reads
        await asyncio.sleep(1.6)
        idle = stream.reads - before
    delivered = first_at[0]
    after = [s for t, s in waits if t >= delivered]
    inside = [s for t, s in waits if delivered <= t < delivered + 1.5]
    assert inside and set(inside) == {0.05}, f"inside the window every wait is poll_s: {after}"
    # Then doubling from poll_s up to idle_max_s, where it stays.
    steps = list(itertools.pairwise(after))
    assert all(b in (a, min(0.8, a * 2)) for a, b in steps), after
    assert after[-1] == 0.8, after
    assert idle <= 3, f"{idle} reads in 1.6 idle seconds at idle_max_s=0.8"
