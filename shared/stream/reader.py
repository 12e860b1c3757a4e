"""Reading one leased shard: fetch, deliver with partial-failure semantics, checkpoint.

A :class:`ShardReader` runs as one task per shard the consumer holds
(:mod:`shared.stream.consumer` owns leases and lifecycle; ``docs/stream.md`` has
the protocol). Every checkpoint is fenced by the lease's owner and counter.

Checkpoints are coalesced, as the KCL lets an application do: a position becomes
*processed* only after the processor returned for every record up to it (its effects
are durable), and is written at most every ``checkpoint_interval_s`` (0: after every
batch), by the lease renewal when one is due (one write does both), and always when
the reader lets go: ``SHARD_END`` at the shard's end, the release or hand-off write on
shutdown and steals. A checkpoint never passes an unprocessed record. After a crash
(``kill -9``) the records processed since the last checkpoint, at most
``checkpoint_interval_s`` of them, are delivered again to the successor: that is safe
because the processor must be idempotent anyway (at-least-once; the stream starter
starts deterministically named executions, so a replayed record starts nothing new).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from shared.aws.clients import error_code
from shared.logs import get_logger
from shared.metrics import (
    STREAM_ITERATOR_AGE,
    STREAM_RECORDS,
    STREAM_THROTTLED,
    STREAM_TRIMMED,
    WORKER_ERRORS,
)
from shared.retry import RetryStopped, pause, retry, sleep_or_stop
from shared.schedule import Schedule
from shared.stream.batch import BatchFailure, PoisonHandler, Processor
from shared.stream.leases import SHARD_END, TRIM_HORIZON, LeaseLost, ShardLease, ShardLeaseTable
from shared.stream.options import StreamOptions
from shared.stream.source import Record, StreamSource

log = get_logger(__name__)
THROTTLED = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException",
                       "LimitExceededException", "RequestLimitExceeded"})
_REOPEN = ""   # "next iterator" meaning: open a new one after the last delivered record


class Stopped(Exception):
    """The shard's reader was asked to stop while retrying: no further checkpoint."""


@dataclass
class Owned:
    """A shard this process holds: its lease, the lock around lease writes, its stop flag."""

    lease: ShardLease
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    hand_to: str | None = None
    lost: bool = False
    read_at: float = field(default_factory=time.monotonic)      # last successful read
    delivering: bool = False    # the processor has a batch (may wait on back-pressure)
    caught_up_at: float = field(default_factory=time.time)      # wall time we were current
    processed: str | None = None    # delivered (processor returned), not yet checkpointed
    written_at: float = field(default_factory=time.monotonic)   # last owner write of the lease

    def lag_s(self) -> float:
        """How far behind this shard's reader is; keeps growing when reads stop."""
        return max(0.0, time.time() - self.caught_up_at)


@dataclass(frozen=True)
class ReadContext:
    """What every shard reader of one consumer shares."""

    source: StreamSource
    leases: ShardLeaseTable
    table: str
    processor: Processor
    on_poison: PoisonHandler | None
    options: StreamOptions
    stopping: asyncio.Event
    on_shard_end: Callable[[], None]


class ShardReader:
    """Reads one shard from its checkpoint until it ends, is lost, handed off or stopped."""

    def __init__(self, ctx: ReadContext, owned: Owned) -> None:
        self.ctx, self.owned = ctx, owned
        self.shard = owned.lease.shard_id
        opts = ctx.options
        self.backoff = Schedule.exponential(opts.retry_base_s, 10.0)
        self.write_backoff = Schedule.exponential(opts.retry_base_s, 5.0)

    async def run(self) -> str:
        """Read, then let go of the lease; returns why it stopped (``shard_end``, ``lost``…)."""
        shard, ctx = self.shard, self.ctx
        reason = "shutdown"
        try:
            reason = await self._read()
        except LeaseLost:
            reason = "lost"
            log.warning("stream.checkpoint_fenced", table=ctx.table, shard=shard)
        except (Stopped, RetryStopped):
            pass
        except asyncio.CancelledError:
            reason = "cancelled"     # a crash: the lease is left to expire
            raise
        finally:
            if reason != "cancelled":
                try:
                    reason = await self._let_go(reason)
                except Exception as exc:
                    log.warning("stream.release_failed", table=ctx.table, shard=shard,
                                error=repr(exc))
            with contextlib.suppress(KeyError):
                STREAM_ITERATOR_AGE.remove(ctx.table, shard)
            log.info("stream.shard_released", table=ctx.table, shard=shard, reason=reason)
        return reason

    async def _read(self) -> str:
        owned, shard, ctx, opts = self.owned, self.shard, self.ctx, self.ctx.options
        position, last = owned.lease.checkpoint, None
        iterator: str | None = None
        idle, failures, busy_until = opts.poll_s, 0, float("-inf")
        while not owned.stop.is_set() and position != SHARD_END:
            try:
                if iterator is None:
                    iterator = await ctx.source.iterator(shard, last or position)
                records, nxt = await self._fetch(iterator)
                failures = 0
                owned.read_at = time.monotonic()
            except Exception as exc:
                code, failures = error_code(exc), failures + 1
                iterator = iterator if code in THROTTLED else None
                if code == "ExpiredIteratorException":
                    log.info("stream.iterator_expired", table=ctx.table, shard=shard,
                             after=last or position)
                    continue
                if code == "TrimmedDataAccessException":
                    STREAM_TRIMMED.labels(table=ctx.table).inc()
                    log.warning("stream.trimmed", table=ctx.table, shard=shard,
                                after=last or position)
                    position, last = TRIM_HORIZON, None
                elif code in THROTTLED:
                    STREAM_THROTTLED.labels(table=ctx.table).inc()
                    log.info("stream.throttled", table=ctx.table, shard=shard)
                else:
                    WORKER_ERRORS.labels(worker="stream").inc()
                    log.warning("stream.read_failed", table=ctx.table, shard=shard,
                                error=repr(exc))
                await pause(owned.stop, self.backoff, failures)
                continue
            if records:
                owned.delivering = True
                try:
                    await self._deliver(records)
                finally:
                    owned.delivering = False
                    owned.read_at = time.monotonic()
                last, idle = records[-1].sequence, opts.poll_s
                busy_until = time.monotonic() + opts.busy_window_s
            if nxt is None:
                await self._write(ctx.leases.finish)
                owned.processed = None
                ctx.on_shard_end()
                log.info("stream.shard_end", table=ctx.table, shard=shard)
                return "shard_end"
            await self._checkpoint_if_due()
            iterator = nxt or None
            if len(records) >= opts.batch_size:
                continue        # a full batch: more is waiting, read on at once
            # Caught up: wait before the next read. For busy_window_s after records the
            # wait stays poll_s (low latency at low traffic: a record waits at most
            # poll_s); after that it doubles up to idle_max_s (cheap when idle).
            busy = time.monotonic() < busy_until
            if await sleep_or_stop(owned.stop, opts.poll_s if busy else idle):
                break
            idle = opts.poll_s if busy else min(opts.idle_max_s, idle * 2)
        return "shutdown"

    async def _let_go(self, reason: str) -> str:
        """Release the lease (or hand it to who asked) unless it is finished or lost."""
        owned = self.owned
        if reason == "shard_end" or owned.lease.finished:
            return "shard_end"
        if owned.lost or reason == "lost":
            return "lost"
        async with owned.lock:   # the processed position goes in the same write
            position, leases = owned.processed, self.ctx.leases
            if owned.hand_to:
                if await leases.hand_off(owned.lease, owned.hand_to, position):
                    owned.processed = None
                return "handoff"
            if await leases.release(owned.lease, position):
                owned.processed = None
        return reason

    async def _fetch(self, iterator: str) -> tuple[list[Record], str | None]:
        """One batch: up to ``batch_size`` records, waiting up to the batching window."""
        ctx, opts = self.ctx, self.ctx.options
        records, nxt = await ctx.source.read(iterator, opts.batch_size)
        deadline = time.monotonic() + opts.batching_window_ms / 1000
        while (records and nxt and len(records) < opts.batch_size
               and time.monotonic() < deadline and not ctx.stopping.is_set()):
            try:
                more, after = await ctx.source.read(nxt, opts.batch_size - len(records))
            except Exception as exc:
                log.info("stream.window_read_failed", shard=self.shard, error=error_code(exc))
                return records, _REOPEN
            records, nxt = records + more, after
            if not more:
                await sleep_or_stop(ctx.stopping,
                                    min(opts.poll_s, max(0.0, deadline - time.monotonic())))
        newest = max((r.created_at for r in records if r.created_at), default=None)
        self.owned.caught_up_at = newest if newest else time.time()
        STREAM_ITERATOR_AGE.labels(table=ctx.table, shard=self.shard).set(self.owned.lag_s())
        return records, nxt

    async def _deliver(self, records: list[Record]) -> None:
        """Process one batch with partial-failure semantics, then checkpoint its end."""
        ctx, owned = self.ctx, self.owned
        for r in records:
            STREAM_RECORDS.labels(table=ctx.table, event=r.event or "?").inc()
        pending = [r for r in records if r.event in ctx.options.events]
        attempt = 0
        while pending:
            try:
                failed = await ctx.processor(pending)
            except BatchFailure as exc:
                failed = exc.sequence
                log.warning("stream.record_failed", table=ctx.table, shard=self.shard,
                            sequence=failed, error=repr(exc.cause))
            except Exception as exc:
                failed = pending[0].sequence
                log.warning("stream.batch_failed", table=ctx.table, error=repr(exc),
                            shard=self.shard)
            if failed is None:
                break
            at = next((i for i, r in enumerate(pending) if r.sequence == failed), 0)
            if at:
                await self._processed(pending[at - 1].sequence)
                pending, attempt = pending[at:], 0
            attempt += 1
            if ctx.on_poison is not None and attempt >= ctx.options.max_attempts:
                await self._poison(pending[0])
                await self._processed(pending[0].sequence)
                pending, attempt = pending[1:], 0
            elif await pause(owned.stop, self.backoff, attempt):
                raise Stopped
        await self._processed(records[-1].sequence)

    async def _poison(self, record: Record) -> None:
        ctx, on_poison = self.ctx, self.ctx.on_poison
        assert on_poison is not None
        log.error("stream.record_poisoned", table=ctx.table, shard=self.shard,
                  sequence=record.sequence, keys=str(record.keys)[:200])

        def failed(_: int, exc: Exception) -> None:
            log.warning("stream.poison_failed", table=ctx.table, error=repr(exc))

        await retry(lambda: on_poison(record), backoff=self.backoff, stop=self.owned.stop,
                    on_failure=failed)

    async def _processed(self, position: str) -> None:
        """Every record up to ``position`` is processed: checkpoint it now or when due."""
        self.owned.processed = position
        await self._checkpoint_if_due()

    async def _checkpoint_if_due(self) -> None:
        owned = self.owned
        if owned.processed is not None and (
                time.monotonic() - owned.written_at >= self.ctx.options.checkpoint_interval_s):
            await self._write(lambda lease: checkpoint_processed(self.ctx.leases, owned, lease))

    async def _write(self, write: Callable[[ShardLease], Awaitable[ShardLease]]) -> None:
        """An owner write, retried on transient errors; :class:`LeaseLost` is final.

        While stopping, a write that keeps failing is given up after three tries: the
        successor replays from the previous checkpoint (at-least-once).
        """
        owned = self.owned

        async def once() -> None:
            async with owned.lock:
                lease = await write(owned.lease)
                if lease is not owned.lease:
                    owned.lease, owned.written_at = lease, time.monotonic()

        def failed(failures: int, exc: Exception) -> None:
            WORKER_ERRORS.labels(worker="stream").inc()
            log.warning("stream.lease_write_failed", table=self.ctx.table, shard=self.shard,
                        error=repr(exc), attempt=failures)

        def give_up(failures: int) -> bool:
            return owned.lost or (owned.stop.is_set() and failures >= 3)

        try:
            # The wait between tries is not cut short by the shard's stop flag (a
            # stopping reader still owes its final checkpoint); ``give_up`` ends it.
            await retry(once, backoff=self.write_backoff, stop=_NEVER,
                        retryable=lambda exc: not isinstance(exc, LeaseLost),
                        give_up=give_up, on_failure=failed)
        except LeaseLost:
            raise
        except Exception as exc:
            raise Stopped from exc


_NEVER = asyncio.Event()


async def checkpoint_processed(leases: ShardLeaseTable, owned: Owned,
                               lease: ShardLease) -> ShardLease:
    """Write ``owned.processed`` as the checkpoint (the caller holds ``owned.lock``).

    Returns ``lease`` itself when nothing is pending (another write took it along).
    The position is cleared only if no newer one was processed during the write.
    """
    position = owned.processed
    if position is None:
        return lease
    written = await leases.checkpoint(lease, position)
    if owned.processed == position:
        owned.processed = None
    return written
