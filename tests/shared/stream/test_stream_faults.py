"""The stream consumer under answers AWS really gives: reads that stop, writes whose
response is lost. (The lease protocol itself: tests/shared/stream/test_stream.py.)"""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from shared.metrics import STREAM_ITERATOR_AGE
from shared.stream.consumer import StreamConsumer, StreamOptions
from shared.stream.leases import ShardLeaseTable
from shared.stream.memory import MemoryStream
from shared.stream.source import Record
from tests.faultproxy import Fault, FaultProxy
from tests.helpers import Env, eventually, service_process
from tools.demo import generate_messages

pytestmark = pytest.mark.own_stack("breaks its own enrichment process's view of the stream")


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
        # Back to normal: a record put now is read with a small lag (S2's own lag is as
        # long as the outage lasted, which a loaded machine stretched past 5 s).
        stream.put("S3")
        await eventually(lambda: _true(len(delivered) == 3), what="a fresh record read")
        assert lag(table, shard) < 5
    finally:
        consumer.shutdown()
        await asyncio.wait_for(task, 10)


async def _true(value: bool) -> bool:
    return value


# --- ambiguous lease writes, from outside the process ----------------------------------

@pytest.mark.parametrize("write", ["checkpoint", "renew"])
async def test_a_lease_write_whose_answer_was_lost_is_recognised(env: Env, write: str) -> None:
    """The write commits, the proxy answers 500, botocore retries, the retry fails its
    condition: the consumer must see its own write, not a lost lease (else the shard,
    and every record after it, waits for the sweeper's reconcile)."""
    leases = env.names.leases
    update = "SET #owner = :me, #cp = :pos" if write == "checkpoint" else \
        "SET #owner = :me, #counter"
    fault = Fault("DynamoDB_20120810.UpdateItem", kinds=("lost_response",), times=1,
                  body=rf'(?s)(?=.*"TableName":\s*"{leases}")(?=.*{re.escape(update)})')
    first, rest = generate_messages(2, prefix=f"REQ-AMB-{write}-A"), \
        generate_messages(20, prefix=f"REQ-AMB-{write}-B")
    async with FaultProxy(env.endpoint) as proxy:
        with service_process(env, "enrichment", AWS_ENDPOINT_URL=proxy.endpoint,
                             REMITFLOW_STREAM_FAILOVER_S="3") as (url, _proc):
            await env.send(*first)
            await all_started(env, first)
            proxy.fail(fault)
            await eventually(lambda: _true(proxy.hits.get(fault, 0) == 1), timeout_s=30,
                             what=f"one {write} answered 500 after it committed")
            await env.send(*rest)
            await all_started(env, rest)
            async with httpx.AsyncClient(base_url=url) as http:
                metrics = (await http.get("/metrics")).text
    recognised = re.findall(r"^remitflow_stream_lease_writes_recognised_total\{[^}]*\} (\S+)$",
                            metrics, re.M)
    assert sum(float(v) for v in recognised) >= 1, "recognised as our own write"


async def all_started(env: Env, messages: list[dict[str, object]]) -> None:
    ids = [str(m["request_id"]) for m in messages]

    async def started() -> bool:
        jobs = [await env.store().get(i) for i in ids]
        return all(j is not None and j.status.value != "RECEIVED" for j in jobs)

    await eventually(started, timeout_s=45, what=f"{len(ids)} jobs started from the stream")
