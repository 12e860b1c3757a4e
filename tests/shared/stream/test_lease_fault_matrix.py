"""The lease fault matrix, one worker: a write that commits and whose call still fails.

For each owner write (take, renew, checkpoint, release) the leases table answers the
first matching call as a lost answer (the write commits, the answer is a 500) and the
next ``k`` matching calls with a 500, from outside the process (``tests/faultproxy.py``).
The SDK retries once (``aws_max_attempts=2``), so with ``k >= 1`` the call itself
fails after the SDK's retries, and the consumer is left with a lease that names it
at a counter it never saw.

The bar is KCL's: once the faults are spent, every open shard is read again within
``failover_s``, or the consumer says it is not ready (``healthy`` is what ``/readyz``
reports). Before the fix a checkpoint answered 500 after it committed released the
shard as lost while the lease item still named the process: nothing read the shard
again and ``healthy`` stayed true (docs/stream.md, "Faults").
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from shared.aws.clients import AwsClients
from shared.stream.consumer import StreamConsumer, StreamOptions
from shared.stream.leases import ShardLeaseTable
from shared.stream.memory import MemoryStream
from shared.stream.source import Record
from tests.faultproxy import Fault, FaultProxy, Kind
from tests.helpers import Env, eventually, replace_settings

pytestmark = pytest.mark.own_stack("its consumers write leases of a table name of their own")

FAILOVER_S = 2.0
OPTIONS = StreamOptions(failover_s=FAILOVER_S, sync_s=0.2, poll_s=0.02, idle_max_s=0.05,
                        retry_base_s=0.05, checkpoint_interval_s=0, stall_after_s=30)

# Each owner write, told apart by its expressions (shared/stream/leases.py).
WRITES = {
    "take": r'"ConditionExpression":\s*"#counter = :c AND #cp <> :end"',
    "renew": r'"UpdateExpression":\s*"SET #owner = :me, #counter = #counter \+ :one',
    "checkpoint": r'"UpdateExpression":\s*"SET #owner = :me, #cp = :pos, #counter',
    "release": r'"UpdateExpression":\s*"SET #cp = (#cp|:pos), #counter[^"]*REMOVE #owner, '
               r'steal_by"',
}


def fault(env: Env, write: str, k: int) -> Fault:
    table = re.escape(env.names.leases)
    error: tuple[Kind, ...] = ("error",)
    kinds: tuple[Kind, ...] = ("lost_response", *(error * k))
    return Fault("DynamoDB_20120810.UpdateItem", kinds=kinds,
                 times=k + 1, body=rf'(?s)(?=.*"TableName":\s*"{table}")(?=.*{WRITES[write]})')


class Worker:
    """One consumer of a one-shard stream, its leases written through the proxy."""

    def __init__(self, stream: MemoryStream, clients: AwsClients, env: Env, name: str,
                 table: str) -> None:
        self.delivered: list[str] = []
        self.leases = ShardLeaseTable(clients.dynamodb, env.names.leases, table, name)

        async def processor(records: list[Record]) -> str | None:
            self.delivered.extend(r.sequence for r in records)
            return None

        self.consumer = StreamConsumer(source=stream, leases=self.leases, table=table,
                                       processor=processor, options=OPTIONS)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.consumer.run())

    async def stop(self) -> None:
        self.consumer.shutdown()
        if self.task is not None:
            await asyncio.wait_for(self.task, 20)


@asynccontextmanager
async def through(proxy: FaultProxy, env: Env) -> AsyncIterator[AwsClients]:
    settings = replace_settings(env.settings, **{"aws_endpoint_url": proxy.endpoint,
                                               "aws_max_attempts": 2})
    async with AwsClients(settings) as clients:
        yield clients


async def read_again_or_unready(worker: Worker, stream: MemoryStream, spent_at: float) -> None:
    """Put a record and watch: it is read, and for as long as it is not, the consumer
    may say it is ready only until ``failover_s`` after the faults were spent."""
    sequence = stream.put(f"AFTER-{time.monotonic()}").sequence
    deadline = time.monotonic() + 25
    while sequence not in worker.delivered:
        now = time.monotonic()
        assert now < deadline, "the shard was never read again"
        if now - spent_at > FAILOVER_S + OPTIONS.renew_every_s:
            assert not worker.consumer.healthy, (
                f"not read for {now - spent_at:.1f}s after the faults, yet ready")
        await asyncio.sleep(0.02)
    lease = (await worker.leases.current())[0]
    assert lease.owner == worker.leases.owner and worker.consumer.held == [lease.shard_id]


async def read(worker: Worker, sequence: str) -> None:
    async def probe() -> bool | None:
        return sequence in worker.delivered or None

    await eventually(probe, timeout_s=20, what=f"{sequence} read")


async def spent(proxy: FaultProxy, f: Fault) -> float:
    deadline = time.monotonic() + 20
    while proxy.hits.get(f, 0) < (f.times or 0):
        assert time.monotonic() < deadline, f"only {proxy.hits.get(f, 0)} of {f.times} faults"
        await asyncio.sleep(0.01)
    return time.monotonic()


@pytest.mark.parametrize("k", [0, 1, 3])
@pytest.mark.parametrize("write", ["take", "renew", "checkpoint"])
async def test_one_worker_reads_every_shard_again_or_is_unready(env: Env, write: str,
                                                                  k: int) -> None:
    stream = MemoryStream(shards=1)
    table = f"matrix-{write}-{k}"
    async with FaultProxy(env.endpoint) as proxy, through(proxy, env) as clients:
        worker = Worker(stream, clients, env, "solo", table)
        f = fault(env, write, k)
        if write == "take":
            proxy.fail(f)          # the very first take
        worker.start()
        try:
            first = stream.put("S1").sequence
            if write != "take":
                await read(worker, first)
                proxy.fail(f)
                if write == "checkpoint":
                    stream.put("S2")   # delivered, then its checkpoint is the faulted write
            spent_at = await spent(proxy, f)
            proxy.heal()
            await read_again_or_unready(worker, stream, spent_at)
        finally:
            await worker.stop()


@pytest.mark.parametrize("k", [0, 1, 3])
async def test_a_release_that_fails_leaves_the_shard_to_the_next_worker(env: Env,
                                                                          k: int) -> None:
    """Release happens when a worker stops; the one worker after it (a restart) must
    read the shard within ``failover_s`` of starting, or say it is not ready."""
    stream = MemoryStream(shards=1)
    table = f"matrix-release-{k}"
    async with FaultProxy(env.endpoint) as proxy, through(proxy, env) as clients:
        first = Worker(stream, clients, env, "before-restart", table)
        first.start()
        one = stream.put("S1").sequence
        await read(first, one)
        f = fault(env, "release", k)
        proxy.fail(f)
        await first.stop()
        assert proxy.hits.get(f, 0) >= 1, "the release was faulted"
        proxy.heal()
        second = Worker(stream, clients, env, "after-restart", table)
        second.start()
        try:
            await read_again_or_unready(second, stream, time.monotonic())
        finally:
            await second.stop()
