"""Stream consumer: every shard of a table's DynamoDB stream, leased, in lineage order.

What the KCL and its DynamoDB Streams adapter do, in asyncio (docs/stream.md has
the whole protocol). Guarantees:

* **At-least-once, in order per shard.** A batch is checkpointed only after the
  processor returned for it (its effects are durable); a crash replays at most the
  records after the last checkpoint. Records of one item stay in order: a shard is
  read sequentially and a child shard only after its parents reached ``SHARD_END``.
* **Fenced.** Checkpoints are conditioned on lease owner and counter
  (:mod:`shared.stream.leases`): a consumer that lost its lease cannot move them.
* **Partial failures.** A processor returns (or raises :class:`BatchFailure` with)
  the sequence number of the first failed record: the records before it are
  checkpointed, the rest retried from it; after ``max_attempts`` that record goes to
  ``on_poison`` (e.g. its job is parked ``RETRY_PENDING``) and the shard moves on.
  Without ``on_poison`` the record is retried until it succeeds. Any other
  exception counts as a failure of the first record of the attempt.
* **Lifecycle.** ``shutdown()`` stops fetching; in-flight batches finish and are
  checkpointed, then every lease is released (or handed to the consumer that asked
  for it) so a successor starts at once. Cancelling ``run()`` is a crash: nothing is
  released and the leases expire after ``failover_s``.
* **Hooks.** ``on_shard_acquired(shard)`` runs before the first processor call for
  that shard; ``on_shard_lost(shard, reason)`` after the last one returned and after
  the final checkpoint/release (reasons: ``shutdown``, ``handoff``, ``lost``,
  ``shard_end``). Per shard, calls never overlap the processor; each acquired is
  followed by exactly one lost unless the consumer is cancelled.
* **At most two readers per shard.** One reader task per shard per process; a new
  owner may overlap only with a zombie that has not yet noticed its lost lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.aws.clients import error_code
from shared.logs import get_logger
from shared.metrics import (
    STREAM_ITERATOR_AGE,
    STREAM_LEASE_TAKES,
    STREAM_LEASES_HELD,
    STREAM_RECORDS,
    STREAM_SHARDS,
    STREAM_THROTTLED,
    STREAM_TRIMMED,
    WORKER_ERRORS,
)
from shared.stream.leases import (
    SHARD_END,
    TRIM_HORIZON,
    ExpiryObserver,
    LeaseLost,
    ShardLease,
    ShardLeaseTable,
    plan,
)
from shared.stream.source import DynamoDBStreamSource, Record, Shard, StreamSource
from shared.worker import backoff_s, sleep_or_stop

__all__ = ["BatchFailure", "DynamoDBStreamSource", "Record", "Shard", "StreamConsumer",
           "StreamSource", "per_record"]

if TYPE_CHECKING:
    pass

log = get_logger(__name__)
THROTTLED = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException",
                       "LimitExceededException", "RequestLimitExceeded"})
_REOPEN = ""   # "next iterator" meaning: open a new one after the last delivered record


class BatchFailure(Exception):
    """Raised by a processor: records before ``sequence`` are done; retry from it."""

    def __init__(self, sequence: str, cause: BaseException | None = None) -> None:
        super().__init__(f"failed at {sequence}: {cause!r}")
        self.sequence = sequence
        self.cause = cause


Processor = Callable[[list[Record]], Awaitable[str | None]]
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


class _Stopped(Exception):
    """The shard's reader was asked to stop while retrying: no further checkpoint."""


@dataclass
class _Owned:
    lease: ShardLease
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    hand_to: str | None = None
    lost: bool = False


class StreamConsumer:
    """Leases shards of one table's stream and feeds ``processor`` from each, in order."""

    def __init__(self, *, source: StreamSource, leases: ShardLeaseTable, table: str,
                 processor: Processor, on_poison: PoisonHandler | None = None,
                 events: frozenset[str] = frozenset({"INSERT"}), batch_size: int = 100,
                 batching_window_ms: int = 0, max_attempts: int = 3,
                 failover_s: float = 10.0, renew_s: float | None = None,
                 sync_s: float = 30.0, poll_s: float = 0.5, idle_max_s: float = 5.0,
                 retry_base_s: float = 0.2, max_steal: int = 2,
                 start_position: str = TRIM_HORIZON,
                 on_shard_acquired: AcquiredHook | None = None,
                 on_shard_lost: LostHook | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = f"stream:{table}"
        self.source, self.leases, self.table = source, leases, table
        self.processor, self.on_poison, self.events = processor, on_poison, events
        self.batch_size, self.batching_window_s = batch_size, batching_window_ms / 1000
        self.max_attempts, self.failover_s = max_attempts, failover_s
        self.renew_s = renew_s or failover_s / 3
        self.sync_s, self.poll_s, self.idle_max_s = sync_s, poll_s, idle_max_s
        self.retry_base_s, self.max_steal = retry_base_s, max_steal
        self.start_position = start_position
        self.on_shard_acquired, self.on_shard_lost = on_shard_acquired, on_shard_lost
        self.clock = clock
        self.observer = ExpiryObserver(failover_s, clock)
        self._stop = asyncio.Event()
        self._owned: dict[str, _Owned] = {}
        self._next_sync = float("-inf")
        self._tick_ok = False
        self._free = 0
        self._let_go_at: dict[str, int] = {}   # counter of our last write before letting go

    # -- lifecycle -----------------------------------------------------------------

    def shutdown(self) -> None:
        self._stop.set()

    @property
    def held(self) -> list[str]:
        """Shards this consumer reads now."""
        return sorted(s for s, o in self._owned.items() if not o.lost)

    @property
    def healthy(self) -> bool:
        """Ready: the lease table is reachable and we hold leases or none are free."""
        return self._tick_ok and not self._stop.is_set() and (bool(self.held) or not self._free)

    async def run(self) -> None:
        """Renew, balance and read until ``shutdown()``; then drain and release."""
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    await self._tick()
                    failures, self._tick_ok = 0, True
                except Exception as exc:
                    failures, self._tick_ok = failures + 1, False
                    WORKER_ERRORS.labels(worker="stream").inc()
                    log.warning("stream.tick_failed", table=self.table, error=repr(exc))
                await sleep_or_stop(self._stop, self.renew_s if not failures
                                    else min(self.renew_s, backoff_s(failures, 0.2, 5.0)))
            for owned in self._owned.values():
                owned.stop.set()
            while readers := [o.task for o in self._owned.values()
                              if o.task and not o.task.done()]:
                await asyncio.wait(readers, timeout=self.renew_s)
                await self._renew_all()
        except asyncio.CancelledError:
            for owned in self._owned.values():
                if owned.task:
                    owned.task.cancel()
            raise
        finally:
            STREAM_LEASES_HELD.labels(table=self.table).set(len(self.held))

    # -- leases --------------------------------------------------------------------

    async def _tick(self) -> None:
        await self._renew_all()
        leases = await self.leases.scan()
        if self.clock() >= self._next_sync:
            self._next_sync = self.clock() + self.sync_s
            if await self.leases.sync(await self.source.shards(), leases, self.start_position):
                leases = await self.leases.scan()
        self.observer.observe(leases)
        by_shard = {lease.shard_id: lease for lease in leases}

        def ready(lease: ShardLease) -> bool:
            return all(p not in by_shard or by_shard[p].finished for p in lease.parents)

        me = self.leases.owner
        for lease in leases:   # handed to us by their previous owner
            if (lease.owner == me and lease.shard_id not in self._owned and not lease.finished
                    and lease.counter > self._let_go_at.get(lease.shard_id, -1)):
                self._start(lease, "steal")
        todo = plan(leases, me, expired=self.observer.expired, ready=ready,
                    max_steal=self.max_steal)
        for lease in todo.take:
            kind = "unowned" if lease.owner is None else "expired"
            if lease.shard_id not in self._owned and (taken := await self.leases.take(lease)):
                self._start(taken, kind)
        for lease in todo.steal:
            if await self.leases.request_steal(lease):
                log.info("stream.steal_requested", table=self.table, shard=lease.shard_id,
                         owner=lease.owner, target=todo.target)
        self._free = max(0, todo.free - len(todo.take))
        states: dict[str, int] = defaultdict(int)
        for lease in leases:
            states["finished" if lease.finished else "waiting_parent" if not ready(lease)
                   else "unowned" if lease.owner is None
                   else "expired" if lease.owner != me and self.observer.expired(lease)
                   else "owned"] += 1
        for state in ("owned", "unowned", "expired", "waiting_parent", "finished"):
            STREAM_SHARDS.labels(table=self.table, state=state).set(states[state])
        STREAM_LEASES_HELD.labels(table=self.table).set(len(self.held))

    def _start(self, lease: ShardLease, kind: str) -> None:
        STREAM_LEASE_TAKES.labels(table=self.table, kind=kind).inc()
        owned = _Owned(lease)
        self._owned[lease.shard_id] = owned
        owned.task = asyncio.create_task(self._read(owned), name=f"{self.name}:{lease.shard_id}")
        log.info("stream.shard_acquired", table=self.table, shard=lease.shard_id, kind=kind,
                 checkpoint=lease.checkpoint)

    async def _renew_all(self) -> None:
        for owned in list(self._owned.values()):
            if owned.lost:
                continue
            async with owned.lock:
                try:
                    owned.lease = await self.leases.renew(owned.lease)
                except LeaseLost:
                    log.warning("stream.lease_lost", table=self.table,
                                shard=owned.lease.shard_id)
                    owned.lost = True
                    owned.stop.set()
                    continue
            thief = owned.lease.steal_by
            if thief and thief != self.leases.owner and owned.hand_to is None:
                owned.hand_to = thief
                owned.stop.set()

    # -- reading ---------------------------------------------------------------------

    async def _read(self, owned: _Owned) -> None:
        shard = owned.lease.shard_id
        reason = "shutdown"
        await self._hook(self.on_shard_acquired, shard)
        try:
            position, last = owned.lease.checkpoint, None
            iterator: str | None = None
            idle, failures = self.poll_s, 0
            while not owned.stop.is_set() and position != SHARD_END:
                try:
                    if iterator is None:
                        iterator = await self.source.iterator(shard, last or position)
                    records, nxt = await self._fetch(shard, iterator)
                    failures = 0
                except Exception as exc:
                    code, failures = error_code(exc), failures + 1
                    iterator = iterator if code in THROTTLED else None
                    if code == "ExpiredIteratorException":
                        log.info("stream.iterator_expired", table=self.table, shard=shard,
                                 after=last or position)
                        continue
                    if code == "TrimmedDataAccessException":
                        STREAM_TRIMMED.labels(table=self.table).inc()
                        log.warning("stream.trimmed", table=self.table, shard=shard,
                                    after=last or position)
                        position, last = TRIM_HORIZON, None
                    elif code in THROTTLED:
                        STREAM_THROTTLED.labels(table=self.table).inc()
                        log.info("stream.throttled", table=self.table, shard=shard)
                    else:
                        WORKER_ERRORS.labels(worker="stream").inc()
                        log.warning("stream.read_failed", table=self.table, shard=shard,
                                    error=repr(exc))
                    await sleep_or_stop(owned.stop, backoff_s(failures, self.retry_base_s, 10))
                    continue
                if records:
                    await self._deliver(owned, records)
                    last, idle = records[-1].sequence, self.poll_s
                if nxt is None:
                    await self._write(owned, self.leases.finish)
                    reason, position = "shard_end", SHARD_END
                    self._next_sync = float("-inf")
                    log.info("stream.shard_end", table=self.table, shard=shard)
                    break
                iterator = nxt or None
                if not records and await sleep_or_stop(owned.stop, idle):
                    break
                idle = self.poll_s if records else min(self.idle_max_s, idle * 2)
        except LeaseLost:
            reason = "lost"
            log.warning("stream.checkpoint_fenced", table=self.table, shard=shard)
        except _Stopped:
            pass
        except asyncio.CancelledError:
            reason = "cancelled"     # a crash: the lease is left to expire
            raise
        finally:
            self._let_go_at[shard] = owned.lease.counter + 1
            if reason != "cancelled":
                try:
                    reason = await self._let_go(owned, reason)
                except Exception as exc:
                    log.warning("stream.release_failed", table=self.table, shard=shard,
                                error=repr(exc))
            with contextlib.suppress(KeyError):
                STREAM_ITERATOR_AGE.remove(self.table, shard)
            del self._owned[shard]
            STREAM_LEASES_HELD.labels(table=self.table).set(len(self.held))
            log.info("stream.shard_released", table=self.table, shard=shard, reason=reason)
        await self._hook(self.on_shard_lost, shard, reason)

    async def _let_go(self, owned: _Owned, reason: str) -> str:
        """Release the lease (or hand it to who asked) unless it is finished or lost."""
        if reason == "shard_end" or owned.lease.finished:
            return "shard_end"
        if owned.lost or reason == "lost":
            return "lost"
        async with owned.lock:
            if owned.hand_to:
                await self.leases.hand_off(owned.lease, owned.hand_to)
                return "handoff"
            await self.leases.release(owned.lease)
        return reason

    async def _fetch(self, shard: str, iterator: str) -> tuple[list[Record], str | None]:
        """One batch: up to ``batch_size`` records, waiting up to the batching window."""
        records, nxt = await self.source.read(iterator, self.batch_size)
        deadline = time.monotonic() + self.batching_window_s
        while (records and nxt and len(records) < self.batch_size
               and time.monotonic() < deadline and not self._stop.is_set()):
            try:
                more, after = await self.source.read(nxt, self.batch_size - len(records))
            except Exception as exc:
                log.info("stream.window_read_failed", shard=shard, error=error_code(exc))
                return records, _REOPEN
            records, nxt = records + more, after
            if not more:
                await asyncio.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))
        newest = max((r.created_at for r in records if r.created_at), default=None)
        STREAM_ITERATOR_AGE.labels(table=self.table, shard=shard).set(
            max(0.0, time.time() - newest) if newest else 0.0)
        return records, nxt

    async def _deliver(self, owned: _Owned, records: list[Record]) -> None:
        """Process one batch with partial-failure semantics, then checkpoint its end."""
        for r in records:
            STREAM_RECORDS.labels(table=self.table, event=r.event or "?").inc()
        pending = [r for r in records if r.event in self.events]
        attempt = 0
        while pending:
            try:
                failed = await self.processor(pending)
            except BatchFailure as exc:
                failed = exc.sequence
                log.warning("stream.record_failed", table=self.table, shard=owned.lease.shard_id,
                            sequence=failed, error=repr(exc.cause))
            except Exception as exc:
                failed = pending[0].sequence
                log.warning("stream.batch_failed", table=self.table, error=repr(exc),
                            shard=owned.lease.shard_id)
            if failed is None:
                break
            at = next((i for i, r in enumerate(pending) if r.sequence == failed), 0)
            if at:
                await self._checkpoint(owned, pending[at - 1].sequence)
                pending, attempt = pending[at:], 0
            attempt += 1
            if self.on_poison is not None and attempt >= self.max_attempts:
                await self._poison(owned, pending[0])
                await self._checkpoint(owned, pending[0].sequence)
                pending, attempt = pending[1:], 0
            elif await sleep_or_stop(owned.stop, backoff_s(attempt, self.retry_base_s, 10)):
                raise _Stopped
        await self._checkpoint(owned, records[-1].sequence)

    async def _poison(self, owned: _Owned, record: Record) -> None:
        assert self.on_poison is not None
        log.error("stream.record_poisoned", table=self.table, shard=owned.lease.shard_id,
                  sequence=record.sequence, keys=str(record.keys)[:200])
        failures = 0
        while True:
            try:
                await self.on_poison(record)
                return
            except Exception as exc:
                failures += 1
                log.warning("stream.poison_failed", table=self.table, error=repr(exc))
                if await sleep_or_stop(owned.stop, backoff_s(failures, self.retry_base_s, 10)):
                    raise _Stopped from exc

    async def _checkpoint(self, owned: _Owned, position: str) -> None:
        async def write(lease: ShardLease) -> ShardLease:
            return await self.leases.checkpoint(lease, position)
        await self._write(owned, write)

    async def _write(self, owned: _Owned, write: Callable[[ShardLease], Awaitable[ShardLease]]
                     ) -> None:
        """An owner write, retried on transient errors; :class:`LeaseLost` is final.

        While stopping, a write that keeps failing is given up after three tries: the
        successor replays from the previous checkpoint (at-least-once).
        """
        failures = 0
        while True:
            try:
                async with owned.lock:
                    owned.lease = await write(owned.lease)
                return
            except LeaseLost:
                raise
            except Exception as exc:
                failures += 1
                WORKER_ERRORS.labels(worker="stream").inc()
                log.warning("stream.lease_write_failed", table=self.table,
                            shard=owned.lease.shard_id, error=repr(exc), attempt=failures)
                if owned.lost or (owned.stop.is_set() and failures >= 3):
                    raise _Stopped from exc
                await asyncio.sleep(backoff_s(failures, self.retry_base_s, 5.0))

    async def _hook(self, hook: Callable[..., Awaitable[None]] | None, *args: str) -> None:
        if hook is None:
            return
        try:
            await hook(*args)
        except Exception as exc:
            log.warning("stream.hook_failed", table=self.table, shard=args[0], error=repr(exc))
