"""The stream consumer under answers AWS really gives: reads that stop, writes whose
response is lost. (The lease protocol itself: tests/test_stream.py.)"""

from __future__ import annotations

import asyncio

from shared.metrics import STREAM_ITERATOR_AGE
from shared.stream.consumer import StreamConsumer, StreamOptions
from shared.stream.leases import ShardLeaseTable
from shared.stream.memory import MemoryStream
from shared.stream.source import Record
from tests.helpers import Env, eventually


def lag(table: str, shard: str) -> float:
    return float(STREAM_ITERATOR_AGE.labels(table=table, shard=shard)._value.get())


async def test_a_held_shard_that_stops_being_read_is_visible(env: Env) -> None:
    """Reads fail for good: /readyz goes false and the lag gauge keeps growing."""
    stream = MemoryStream(shards=1)
    table = env.names.remittances
    leases = ShardLeaseTable(env.clients.dynamodb, env.names.leases, table, "solo")
    delivered: list[str] = []

    async def processor(records: list[Record]) -> str | None:
        delivered.extend(r.sequence for r in records)
        return None

    consumer = StreamConsumer(
        source=stream, leases=leases, table=table, processor=processor,
        options=StreamOptions(failover_s=3, renew_s=0.05, sync_s=0.1, poll_s=0.02,
                              idle_max_s=0.05, retry_base_s=0.01, stall_after_s=0.5))
    task = asyncio.create_task(consumer.run())
    try:
        stream.put("S1")
        await eventually(lambda: _true(len(delivered) == 1 and consumer.healthy),
                         what="reading and ready")
        shard = consumer.held[0]
        stream.throttle(10**9)           # every read from now on fails
        stream.put("S2")
        await eventually(lambda: _true(not consumer.healthy), what="unready once stalled")
        assert consumer.stalled == [shard]
        first = lag(table, shard)
        rounds = consumer.ticks
        await eventually(lambda: _true(consumer.ticks >= rounds + 5), what="more lease rounds")
        assert lag(table, shard) > first, "the lag gauge keeps growing while nothing is read"
        stream.throttle(0)               # reads work again
        await eventually(lambda: _true(len(delivered) == 2 and consumer.healthy),
                         what="caught up and ready again")
        assert lag(table, shard) < 5
    finally:
        consumer.shutdown()
        await asyncio.wait_for(task, 10)


async def _true(value: bool) -> bool:
    return value
