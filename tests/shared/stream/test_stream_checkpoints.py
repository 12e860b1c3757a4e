"""Coalesced checkpoints: fewer lease writes under a burst, nothing lost after a crash.

The lease table is the emulator's real DynamoDB table; the stream is
:class:`~shared.stream.memory.MemoryStream` (records put exactly when the test says).
A crash is a cancelled ``run()``; expiry is an injected clock (``tests/shared/stream/support.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.metrics import STREAM_LEASE_WRITES
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


async def test_after_records_the_reader_keeps_polling_then_backs_off(env: Env) -> None:
    """Low traffic, low latency: for ``busy_window_s`` after a read with records the
    shard is read every ``poll_s`` (a record waits at most that); once the window is
    over it backs off to ``idle_max_s`` again (cheap when idle)."""
    stream, sink, clock = MemoryStream(shards=1), Sink(), Clock()
    # No checkpoint write inside the measured seconds: the loop would wait for it (and
    # for the renewal holding the lease's lock), and on a loaded machine two lease-table
    # calls took the whole busy second (0 reads). Renewals still carry the position.
    c = consumer(env, stream, "P", sink, clock, poll_s=0.05, idle_max_s=0.8,
                 busy_window_s=1.5, renew_s=1.0, checkpoint_interval_s=60)
    async with started(c):
        await until(lambda: len(c.held) == 1, "P holds the shard")
        stream.put("P0")
        await until(lambda: len(sink.seqs()) == 1, "first record")
        before = stream.reads
        await asyncio.sleep(1.0)                     # inside the window: every 0.05 s
        busy = stream.reads - before
        await asyncio.sleep(1.0)                     # window over at 1.5 s: backing off
        await asyncio.sleep(1.5)
        before = stream.reads
        await asyncio.sleep(1.6)
        idle = stream.reads - before
    # Doubling from 0.05 s would be 4 reads in the first second (0.05+0.1+0.2+0.4).
    assert busy >= 8, f"{busy} reads in the busy second"
    assert idle <= 3, f"{idle} reads in 1.6 idle seconds at idle_max_s=0.8"
