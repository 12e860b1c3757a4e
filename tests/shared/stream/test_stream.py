"""The stream consumer: leases, lineage, failover, fencing, iterators, partial failures.

The lease table is the emulator's real DynamoDB table; the stream is either the
emulator's (one shard) or :class:`~shared.stream.memory.MemoryStream` (many shards,
splits, expiry, trimming, throttling) behind the same interface. Failover time is
an injected clock: no test waits for ``failover_s`` except the real-process one.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Any

import httpx
import pytest

from shared.aws.dynamo import to_item
from shared.metrics import STREAM_CHECKPOINT_CONFLICTS, STREAM_TRIMMED, WORKFLOW_STARTS
from shared.pipeline.assemble import retry_policy, state_machine_arn
from shared.pipeline.jobs import content_hash
from shared.pipeline.starter import WorkflowStarter
from shared.stream.balance import ExpiryObserver
from shared.stream.batch import BatchFailure, Processor, per_record
from shared.stream.leases import SHARD_END, LeaseLost, ShardLeaseTable
from shared.stream.memory import MemoryStream
from shared.stream.source import Record
from tests.helpers import Env, eventually, job_in, service_process
from tests.shared.stream.support import FAILOVER_S, Clock, Sink, key, kill, make, started, until

pytestmark = pytest.mark.own_stack(
    "consumes the whole table stream "
    "and hands its shard leases around")


def assert_per_key_order(sink: Sink, stream: MemoryStream) -> None:
    """Each key's records were first delivered in stream order (no record skipped)."""
    first: dict[str, int] = {}
    for i, (_, seq, _) in enumerate(sink.delivered):
        first.setdefault(seq, i)
    by_key: dict[str, list[str]] = defaultdict(list)
    for r in stream.records():
        by_key[key(r)].append(r.sequence)
    for k, seqs in by_key.items():
        assert all(s in first for s in seqs), f"{k}: records never delivered"
        order = [first[s] for s in sorted(seqs)]
        assert order == sorted(order), f"{k}: delivered out of order"


async def test_lineage_order_across_splits_and_cleanup(env: Env) -> None:
    stream, sink, clock = MemoryStream(shards=2), Sink(), Clock()
    a, b = [s.shard_id for s in await stream.shards()]
    for i in range(20):
        stream.put(f"K{i % 6}")
    kids = stream.split(a)
    grandkid = stream.close(kids[0])
    for i in range(20, 60):
        stream.put(f"K{i % 6}")
    consumer = make(env, stream, "solo", sink.processor("solo"), clock, sink=sink, batch_size=3)
    async with started(consumer):
        await until(lambda: len(sink.seqs()) == 60, "all 60 records")
        stream.split(b)
        for i in range(60, 80):
            stream.put(f"K{i % 6}")
        await until(lambda: len(sink.seqs()) == 80, "all 80 records")
        leases = ShardLeaseTable(env.clients.dynamodb, env.names.leases, env.names.remittances,
                                 "observer")

        async def parents_cleaned() -> bool:
            left = {lease.shard_id for lease in await leases.current()}
            return a not in left and kids[0] not in left
        await eventually(parents_cleaned, what="finished parent leases deleted")
    assert sink.seqs() == Counter({r.sequence: 1 for r in stream.records()}), "dup or skip"
    assert_per_key_order(sink, stream)
    acquired = [s for _, what, s in sink.events if what == "acquired"]
    assert acquired.index(a) < acquired.index(kids[0]) < acquired.index(grandkid[0])
    ends = [s for _, what, s in sink.events if what == "lost:shard_end"]
    assert ends.index(a) < ends.index(kids[0])


async def starter_for(env: Env) -> WorkflowStarter:
    arn = await state_machine_arn(env.clients, env.names.enrichment_sm)
    return WorkflowStarter(env.clients.sfn, env.store(), arn, retry_policy(env.settings))


async def put_job(env: Env, stream: MemoryStream, request_id: str) -> None:
    """A real job item in the emulator's table, and its INSERT record on the memory stream."""
    payload = f'{{"request_id": "{request_id}"}}'
    job = await env.store().create(request_id, payload, content_hash(payload))
    assert job is not None
    stream.put(request_id, image=to_item(job.raw))


async def test_two_consumers_share_fairly_and_survive_a_kill(env: Env) -> None:
    stream, sink, clock = MemoryStream(shards=8), Sink(), Clock()
    starter = await starter_for(env)

    def counted(name: str) -> Processor:
        inner, note = per_record(starter.on_inserted), sink.processor(name)

        async def process(records: list[Record]) -> str | None:
            failed = await inner(records)
            await note(records)
            return failed
        return process

    started_before = WORKFLOW_STARTS.labels(table=env.names.remittances, outcome="started")
    base = started_before._value.get()
    a = make(env, stream, "A", counted("A"), clock, sink=sink)
    b = make(env, stream, "B", counted("B"), clock, sink=sink)
    async with started(a) as tasks_a:
        await until(lambda: len(a.held) == 8, "A holds all 8 shards")
        async with started(b) as tasks_b:
            await until(lambda: len(a.held) == len(b.held) == 4, "4 + 4 after balancing")
            for i in range(40):
                await put_job(env, stream, f"REQ-SHARE-{i:03d}")
            await until(lambda: len(sink.seqs()) == 40, "first 40 delivered")
            assert {c for c, _, _ in sink.delivered} == {"A", "B"}
            kill(tasks_a, "A")
            for i in range(40, 80):
                await put_job(env, stream, f"REQ-SHARE-{i:03d}")
            rounds = b.ticks
            await until(lambda: b.ticks >= rounds + 3, "B ran three more lease rounds")
            assert len(b.held) == 4, "B took A's leases before they expired"
            clock.advance(FAILOVER_S)
            await until(lambda: len(b.held) == 8, "B took over the 8 shards", timeout_s=5)
            await until(lambda: len(sink.seqs()) == 80, "all 80 delivered")
            assert b.healthy
            del tasks_b
    assert set(sink.seqs()) == {r.sequence for r in stream.records()}, "a record was skipped"
    assert_per_key_order(sink, stream)
    assert started_before._value.get() - base == 80, "a workflow started twice (or never)"
    names = [e["name"] for e in await env.executions(env.names.enrichment_sm)]
    assert len(names) == len(set(names)) == 80
    assert stream.max_readers <= 2


async def test_graceful_shutdown_hands_leases_over_at_once(env: Env) -> None:
    stream, sink, clock = MemoryStream(shards=4), Sink(), Clock()
    a = make(env, stream, "A", sink.processor("A"), clock, sink=sink)
    b = make(env, stream, "B", sink.processor("B"), clock, sink=sink)
    async with started(a, b) as tasks:
        await until(lambda: len(a.held) == len(b.held) == 2, "2 + 2")
        for i in range(30):
            stream.put(f"G{i}")
        await until(lambda: len(sink.seqs()) == 30, "first 30")
        a.shutdown()
        await asyncio.wait_for(tasks["A"], 5)
        await until(lambda: len(b.held) == 4, "B holds all 4 without any failover wait",
                    timeout_s=3)
        for i in range(30, 60):
            stream.put(f"G{i}")
        await until(lambda: len(sink.seqs()) == 60, "all 60")
    assert max(sink.seqs().values()) == 1, "graceful hand-over replayed records"
    assert_per_key_order(sink, stream)
    for shard in {s for _, _, s in sink.events}:    # hooks bracket each ownership
        mine = [(c, w) for c, w, s in sink.events if s == shard]
        assert mine[0][1] == "acquired" and all(
            w1 == "acquired" and w2.startswith("lost:") and c1 == c2
            for (c1, w1), (c2, w2) in zip(mine[::2], mine[1::2], strict=True))
    reasons = Counter(w for c, w, _ in sink.events if c == "A" and w.startswith("lost:"))
    assert reasons["lost:shutdown"] == 2 and set(reasons) <= {"lost:shutdown", "lost:handoff"}


async def test_expired_iterators_throttling_and_trimmed_data(env: Env) -> None:
    stream, sink, clock = MemoryStream(shards=2), Sink(), Clock()
    consumer = make(env, stream, "solo", sink.processor("solo"), clock, batch_size=4)
    async with started(consumer):
        for i in range(20):
            stream.put(f"E{i}")
        await until(lambda: len(sink.seqs()) == 20, "20")
        stream.expire_iterators()
        stream.throttle(5)
        for i in range(20, 40):
            stream.put(f"E{i}")
        await until(lambda: len(sink.seqs()) == 40, "40 after expiry and throttling")
    assert max(sink.seqs().values()) == 1, "expired iterator recovery replayed records"
    shard = stream.open_shards()[0]
    for i in range(40, 60):
        stream.put(f"E{i}")
    trimmed = STREAM_TRIMMED.labels(table=env.names.remittances)
    before = trimmed._value.get()
    stream.trim(shard, len(stream.records(shard)))        # everything unread is gone
    for i in range(60, 64):
        stream.put(f"E{i}")
    async with started(make(env, stream, "solo2", sink.processor("solo2"), clock)):
        await until(lambda: trimmed._value.get() > before, "trimmed data counted")
        await until(lambda: all(sink.seqs()[r.sequence] for r in stream.records()
                                if r.keys["request_id"]["S"] in {f"E{i}" for i in range(60, 64)}),
                    "records after the trim horizon delivered")


async def test_zombie_cannot_checkpoint(env: Env) -> None:
    """Z is partitioned from the lease table mid-batch; H takes over; Z's checkpoint fails."""
    stream, sink, clock = MemoryStream(shards=1), Sink(gate=asyncio.Event()), Clock()
    zombie = make(env, stream, "Z", sink.processor("Z"), clock, sink=sink)
    heir = make(env, stream, "H", sink.processor("H"), clock, sink=sink)
    conflicts = STREAM_CHECKPOINT_CONFLICTS.labels(table=env.names.remittances)
    before = conflicts._value.get()
    stream.put("Z1")
    async with started(zombie):
        await until(lambda: len(zombie.held) == 1, "Z holds the shard")

        async def partitioned(lease: Any) -> Any:
            raise ConnectionError("lease table unreachable")
        zombie.leases.renew = partitioned  # type: ignore[method-assign]
        await until(lambda: not zombie.healthy, "Z notices it cannot renew")
        async with started(heir):
            await until(lambda: heir.ticks >= 2, "H saw the lease (observed, not yet expired)")
            assert not heir.held
            clock.advance(FAILOVER_S)
            await until(lambda: len(heir.held) == 1, "H took the expired lease")
            assert zombie.held, "Z still believes it reads the shard"
            assert sink.gate is not None
            sink.gate.set()    # both finish the batch; only H may checkpoint it
            await until(lambda: ("Z", "lost:lost", stream.open_shards()[0]) in sink.events,
                        "Z fenced")
            await until(lambda: sink.seqs()[stream.records()[0].sequence] == 2, "H delivered")
            first = stream.records()[0].sequence

            async def checkpointed() -> Any:
                # H writes its checkpoint after the batch is delivered, not with it.
                lease = (await heir.leases.current())[0]
                return lease if lease.checkpoint == first else None
            lease = await eventually(checkpointed, timeout_s=10, what="H checkpointed the batch")
            assert lease.owner == "H"
            with pytest.raises(LeaseLost):
                await zombie.leases.checkpoint(replace(lease, owner="Z"), "99999")
    assert conflicts._value.get() - before >= 2


async def test_lease_protocol_expiry_and_fencing(env: Env) -> None:
    clock = Clock()
    one = ShardLeaseTable(env.clients.dynamodb, env.names.leases, "tbl", "one")
    two = ShardLeaseTable(env.clients.dynamodb, env.names.leases, "tbl", "two")
    assert await one.create("s1", (), "TRIM_HORIZON")
    assert not await two.create("s1", (), "TRIM_HORIZON")
    mine = await one.take((await one.current())[0])
    assert mine is not None and mine.owner == "one"
    observer = ExpiryObserver(10, clock)
    observer.observe(await two.current())
    clock.advance(9)
    mine = await one.renew(mine)
    observer.observe(await two.current())
    clock.advance(9)
    assert not observer.expired((await two.current())[0]), "renewed: counter moved"
    clock.advance(2)
    seen = (await two.current())[0]
    observer.observe([seen])
    assert observer.expired(seen)
    stolen = await two.take(seen)
    assert stolen is not None and stolen.owner == "two"
    assert await two.take(seen) is None, "a stale observation cannot take twice"
    with pytest.raises(LeaseLost):
        await one.checkpoint(mine, "123")
    with pytest.raises(LeaseLost):
        await one.renew(mine)
    done = await two.finish(await two.checkpoint(stolen, "456"))
    assert done.checkpoint == SHARD_END and done.owner is None
    assert await one.take(done) is None, "a finished lease is never taken"


async def test_poison_record_goes_to_callback_and_shard_moves_on(env: Env) -> None:
    stream, sink, clock = MemoryStream(shards=1), Sink(failing={"P2"}), Clock()

    async def park(record: Record) -> None:
        sink.poisoned.append(key(record))

    consumer = make(env, stream, "solo", sink.processor("solo"), clock, on_poison=park,
                    max_attempts=3)
    for k in ("P1", "P2", "P3", "P4"):
        stream.put(k)
    async with started(consumer):
        await until(lambda: len(sink.seqs()) == 3, "the other three delivered")
    assert sink.poisoned == ["P2"]
    assert [k for _, _, k in sink.delivered] == ["P1", "P3", "P4"]


async def test_batch_failure_retries_from_the_failed_record(env: Env) -> None:
    stream, clock = MemoryStream(shards=1), Clock()
    calls: list[list[str]] = []

    async def flaky(records: list[Record]) -> str | None:
        calls.append([key(r) for r in records])
        if len(calls) == 1:
            raise BatchFailure(records[1].sequence)
        return None

    for k in ("F1", "F2", "F3"):
        stream.put(k)
    async with started(make(env, stream, "solo", flaky, clock)):
        await until(lambda: len(calls) >= 2, "retried")
    assert calls[:2] == [["F1", "F2", "F3"], ["F2", "F3"]]


async def test_park_record_parks_a_received_job(env: Env) -> None:
    stream = MemoryStream()
    await put_job(env, stream, "REQ-POISON-1")
    await (await starter_for(env)).park_record(stream.records()[0])
    await job_in(env.store(), "REQ-POISON-1", "RETRY_PENDING", timeout_s=5)


async def test_two_processes_take_over_after_kill_9(env: Env) -> None:
    fast: dict[str, Any] = {"REMITFLOW_STREAM_FAILOVER_S": "3",
                            "REMITFLOW_STREAM_POLL_INTERVAL_S": "0.2",
                            "REMITFLOW_STREAM_IDLE_MAX_S": "0.5"}
    leases = ShardLeaseTable(env.clients.dynamodb, env.names.leases, env.names.remittances, "t")
    with service_process(env, "enrichment", **fast) as (url1, p1), \
            service_process(env, "enrichment", **fast) as (url2, p2):
        async with httpx.AsyncClient(timeout=5) as http:
            async def ready(url: str) -> bool:
                try:
                    return (await http.get(f"{url}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False
            for url in (url1, url2):
                await eventually(lambda url=url: ready(url), what=f"{url} ready")  # type: ignore[misc]

            async def owner() -> str | None:
                found = [lease.owner for lease in await leases.current() if lease.owner]
                return found[0] if found else None
            holder = await eventually(owner, what="a lease holder")
            pid = int(holder.split(":")[1])
            assert pid in (p1.pid, p2.pid)
            await env.send(_message("REQ-KILL-0"))
            await job_in(env.store(), "REQ-KILL-0", "COMPLETED")
            killed = asyncio.get_running_loop().time()
            os.kill(pid, signal.SIGKILL)

            async def new_owner() -> str | None:
                now = await owner()
                return now if now and now != holder else None
            heir = await eventually(new_owner, timeout_s=10, what="lease taken over")
            took = asyncio.get_running_loop().time() - killed
            assert int(heir.split(":")[1]) != pid
            assert took < 3 + 1 + 1.5, f"takeover took {took:.1f}s"
            await env.send(*[_message(f"REQ-KILL-{i}") for i in range(1, 6)])
            for i in range(1, 6):
                await job_in(env.store(), f"REQ-KILL-{i}", "COMPLETED")
    names = [e["name"] for e in await env.executions(env.names.enrichment_sm)]
    assert sorted(names) == sorted(f"REQ-KILL-{i}-a1" for i in range(6))


def _message(request_id: str) -> dict[str, Any]:
    return {"schema_version": "1", "request_id": request_id, "partner": "TOKYOBANK",
            "status": "SETTLED", "payment_method": "WIRE", "amount": "150000",
            "currency": "JPY", "payee_id": "PAYEE-0003", "invoice_ids": ["INV-3001"],
            "occurred_at": "2026-11-25T01:30:00Z"}



async def test_concurrent_per_record_keeps_key_order_and_reports_earliest_failure() -> None:
    seen: list[str] = []

    async def processor(records: list[Record]) -> None:
        (record,) = records
        await asyncio.sleep(0.01 if record.keys["k"] == "a" else 0)
        if record.sequence in {"5", "3"}:
            raise RuntimeError(f"boom {record.sequence}")
        seen.append(record.sequence)

    records = [Record("INSERT", str(i), {"k": "a" if i % 2 else "b"}, None, None)
               for i in range(1, 7)]
    with pytest.raises(BatchFailure) as caught:
        await per_record(processor, concurrency=8)(records)
    assert caught.value.sequence == "3", "retry starts at the earliest failed record"
    assert seen.index("2") < seen.index("4") < seen.index("6"), "one key keeps its order"
    assert "1" in seen and "5" not in seen, "a key stops at its first failure"
