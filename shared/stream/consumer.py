"""Stream consumer: every shard of a table's DynamoDB stream, leased, in lineage order.

What the KCL and its DynamoDB Streams adapter do, in asyncio (``docs/stream.md``
has the whole protocol). This module owns leases and lifecycle; reading one
shard is :mod:`shared.stream.reader`. Guarantees:

* **At-least-once, in order per shard.** A position is checkpointed only after the
  processor returned for every record up to it (its effects are durable); a crash
  replays at most the records after the last checkpoint. Checkpoints are coalesced
  (at most every ``checkpoint_interval_s``, folded into the lease renewal when one
  is due, always written on shutdown, hand-off and shard end; see
  :mod:`shared.stream.reader`), so a crash replays up to that interval's records:
  the processor is idempotent (the stream starter's execution names are). Records
  of one item stay in order: a shard is read sequentially and a child shard only
  after its parents reached ``SHARD_END``.
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
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

from shared.logs import get_logger
from shared.metrics import (
    STREAM_ITERATOR_AGE,
    STREAM_LEASE_TAKES,
    STREAM_LEASES_HELD,
    STREAM_SHARDS,
    WORKER_ERRORS,
)
from shared.retry import sleep_or_stop
from shared.schedule import Schedule
from shared.stream.balance import ExpiryObserver, plan
from shared.stream.batch import (
    AcquiredHook,
    BatchFailure,
    LostHook,
    PoisonHandler,
    Processor,
    per_record,
)
from shared.stream.leases import LeaseLost, ShardLease, ShardLeaseTable
from shared.stream.options import StreamOptions
from shared.stream.reader import Owned, ReadContext, ShardReader, checkpoint_processed
from shared.stream.source import DynamoDBStreamSource, Record, Shard, StreamSource
from shared.worker import Lifecycle

__all__ = ["BatchFailure", "DynamoDBStreamSource", "Record", "Shard", "StreamConsumer",
           "StreamOptions", "StreamSource", "per_record"]

log = get_logger(__name__)


class StreamConsumer(Lifecycle):
    """Leases shards of one table's stream and feeds ``processor`` from each, in order."""

    def __init__(self, *, source: StreamSource, leases: ShardLeaseTable, table: str,
                 processor: Processor, options: StreamOptions | None = None,
                 on_poison: PoisonHandler | None = None,
                 on_shard_acquired: AcquiredHook | None = None,
                 on_shard_lost: LostHook | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.name = f"stream:{table}"
        self.options = options = options or StreamOptions()
        self.source, self.leases, self.table = source, leases, table
        self.on_shard_acquired, self.on_shard_lost = on_shard_acquired, on_shard_lost
        self.clock = clock
        self.observer = ExpiryObserver(options.failover_s, clock)
        self._ctx = ReadContext(source=source, leases=leases, table=table, processor=processor,
                                on_poison=on_poison, options=options, stopping=self._stop,
                                on_shard_end=self._resync_soon)
        self._owned: dict[str, Owned] = {}
        self._next_sync = float("-inf")
        self._tick_ok = False
        self._free = 0
        self._let_go_at: dict[str, int] = {}   # counter of our last write before letting go
        self._tick_backoff = Schedule.exponential(0.2, 5.0)
        self.ticks = 0   # lease rounds run, successful or not: lets tests count rounds

    # -- lifecycle -----------------------------------------------------------------

    @property
    def held(self) -> list[str]:
        """Shards this consumer reads now."""
        return sorted(s for s, o in self._owned.items() if not o.lost)

    @property
    def stalled(self) -> list[str]:
        """Held shards not read successfully for ``stall_after_s``.

        A shard whose processor holds a batch is not stalled: it is waiting for the
        work it started (back-pressure, ``shared/pipeline/admission.py``) and its lag
        gauge shows how long.
        """
        limit = time.monotonic() - self.options.stall_after_s
        return sorted(s for s, o in self._owned.items()
                      if not o.lost and not o.delivering and o.read_at < limit)

    @property
    def healthy(self) -> bool:
        """Ready: the lease table is reachable, we hold leases or none are free, and every
        held shard is being read."""
        return (self._tick_ok and not self._stop.is_set() and (bool(self.held) or not self._free)
                and not self.stalled)

    async def run(self) -> None:
        """Renew, balance and read until ``shutdown()``; then drain and release."""
        self._begin()
        renew_s, failures = self.options.renew_every_s, 0
        try:
            while not self._stop.is_set():
                failures = 0 if await self.tick_once() else failures + 1
                await sleep_or_stop(self._stop, renew_s if not failures
                                    else min(renew_s, self._tick_backoff.delay(failures)))
            for owned in self._owned.values():
                owned.stop.set()
            while readers := [o.task for o in self._owned.values()
                              if o.task and not o.task.done()]:
                await asyncio.wait(readers, timeout=renew_s)
                await self._renew_all()
        except asyncio.CancelledError:
            for owned in self._owned.values():
                if owned.task:
                    owned.task.cancel()
            raise
        finally:
            STREAM_LEASES_HELD.labels(table=self.table).set(len(self.held))

    async def run_once(self) -> bool:
        return await self.tick_once()

    async def tick_once(self) -> bool:
        """One round: renew held leases, sync shards, take and balance; False on failure."""
        self.ticks += 1
        try:
            await self._tick()
        except Exception as exc:
            self._tick_ok = False
            WORKER_ERRORS.labels(worker="stream").inc()
            log.warning("stream.tick_failed", table=self.table, error=repr(exc))
        else:
            self._tick_ok = True
        self._report_lag()
        return self._tick_ok

    def _resync_soon(self) -> None:
        self._next_sync = float("-inf")

    # -- leases --------------------------------------------------------------------

    async def _tick(self) -> None:
        await self._renew_all()
        leases = await self.leases.current()
        if self.clock() >= self._next_sync:
            self._next_sync = self.clock() + self.options.sync_s
            if await self.leases.sync(await self.source.shards(), leases,
                                      self.options.start_position):
                leases = await self.leases.current()
        self.observer.observe(leases)
        by_shard = {lease.shard_id: lease for lease in leases}

        def ready(lease: ShardLease) -> bool:
            return all(p not in by_shard or by_shard[p].finished for p in lease.parents)

        me = self.leases.owner
        # A lease that names us and that no reader of ours holds is ours to take back:
        # handed to us by its previous owner, or left naming us by a write whose call
        # failed after it committed (a release or checkpoint answered 5xx). Nobody else
        # would ever take it (it is not expired for us, and with one consumer there is
        # nobody else), so take it back now, fenced on the counter we saw.
        for lease in leases:
            if lease.owner == me and lease.shard_id not in self._owned and not lease.finished:
                handed = lease.counter > self._let_go_at.get(lease.shard_id, -1)
                if taken := await self.leases.take(lease):
                    self._start(taken, "steal" if handed else "reclaimed")
        todo = plan(leases, me, expired=self.observer.expired, ready=ready,
                    max_steal=self.options.max_steal)
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

    def _report_lag(self) -> None:
        """Lag per held shard from the lease round, so it grows even when reads stop."""
        for shard, owned in list(self._owned.items()):
            if not owned.lost:
                STREAM_ITERATOR_AGE.labels(table=self.table, shard=shard).set(owned.lag_s())
        if stalled := self.stalled:
            log.warning("stream.shards_stalled", table=self.table, shards=stalled,
                        stall_after_s=self.options.stall_after_s)

    def _start(self, lease: ShardLease, kind: str) -> None:
        STREAM_LEASE_TAKES.labels(table=self.table, kind=kind).inc()
        owned = Owned(lease)
        self._owned[lease.shard_id] = owned
        owned.task = asyncio.create_task(self._read(owned), name=f"{self.name}:{lease.shard_id}")
        log.info("stream.shard_acquired", table=self.table, shard=lease.shard_id, kind=kind,
                 checkpoint=lease.checkpoint)

    async def _renew_all(self) -> None:
        """Renew each held lease, in one write with its pending checkpoint if it has one.

        A lease written (checkpoint) within the last half renew interval is not renewed
        again: its counter moved, and its ``steal_by`` came back with that write. So the
        counter still moves at least every 1.5 renew intervals, well inside ``failover_s``.
        """
        fresh = self.options.renew_every_s / 2
        failed: Exception | None = None
        for owned in list(self._owned.values()):
            if owned.lost:
                continue
            async with owned.lock:
                try:
                    if owned.processed is not None:
                        lease = await checkpoint_processed(self.leases, owned, owned.lease)
                    elif time.monotonic() - owned.written_at >= fresh:
                        lease = await self.leases.renew(owned.lease)
                    else:
                        lease = owned.lease
                    if lease is not owned.lease:
                        owned.lease, owned.written_at = lease, time.monotonic()
                except LeaseLost:
                    log.warning("stream.lease_lost", table=self.table,
                                shard=owned.lease.shard_id)
                    owned.lost = True
                    owned.stop.set()
                    continue
                except Exception as exc:   # transient: the other leases still renew
                    failed = failed or exc
                    continue
            thief = owned.lease.steal_by
            if thief and thief != self.leases.owner and owned.hand_to is None:
                owned.hand_to = thief
                owned.stop.set()
        if failed is not None:
            raise failed   # this round failed: unready until a round succeeds

    # -- one reader per shard --------------------------------------------------------

    async def _read(self, owned: Owned) -> None:
        shard = owned.lease.shard_id
        await self._hook(self.on_shard_acquired, shard)
        try:
            reason = await ShardReader(self._ctx, owned).run()
        finally:
            self._let_go_at[shard] = owned.lease.counter + 1
            del self._owned[shard]
            STREAM_LEASES_HELD.labels(table=self.table).set(len(self.held))
        await self._hook(self.on_shard_lost, shard, reason)

    async def _hook(self, hook: Callable[..., Awaitable[None]] | None, *args: str) -> None:
        if hook is None:
            return
        try:
            await hook(*args)
        except Exception as exc:
            log.warning("stream.hook_failed", table=self.table, shard=args[0], error=repr(exc))
