"""The sweeper's schedule: when and where it sweeps, under a leadership lease.

Each sweep walks every job kind's sparse indexes page by page and hands each job to
its responsibility: a due retry to :mod:`shared.operations.redrive` (re-drive, or
fail the hopeless), an overdue running job to :mod:`shared.operations.reconcile`.
What operators do by hand is :mod:`shared.operations.facade`. What a sweep reads
and did is in :mod:`shared.operations.targets`.

A sweep reads only the sparse indexes (``retry-index``, ``running-index``, and a
``Select=COUNT`` over all three for the backlog gauges): a finished job carries no
index attribute, so the cost of a sweep grows with the backlog, never with the
table. Each sweep reports the ``ScannedCount``/``Count`` it read. The gauges (the
backlog counts and the queue depths, most of an idle sweep's calls) are refreshed
on their own clock, ``gauges_every_s`` (``REMITFLOW_QUEUE_DEPTH_INTERVAL_S``), and by
every forced sweep: a sweep interval shorter than that re-drives sooner without
multiplying the reads behind the gauges.

Every write is a version-conditioned :meth:`JobStore.transition` and every start
uses the attempt's deterministic execution name (:meth:`WorkflowStarter.begin`),
so two sweepers running at once (a lease hand-over, a manual ``POST /v1/sweep``,
the lease switched off) race but never start an attempt twice: the loser gets
:class:`VersionConflict`, counts a ``conflict`` and moves on. The leadership lease
only keeps the work, and the AWS bill, to one replica.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from shared.aws.clients import QueueUrls
from shared.logs import get_logger
from shared.metrics import (
    ADMISSION_DEFERRED,
    JOBS,
    QUEUE_MESSAGES,
    SWEEP_DURATION,
    SWEEPER_ITEMS_READ,
    SWEEPER_LAST_SUCCESS,
    SWEEPER_LEADER,
    WORKER_ERRORS,
)
from shared.operations.handoff import HandoffCheck
from shared.operations.leader import Leases
from shared.operations.reconcile import reconcile, start_if_missing
from shared.operations.redrive import REDRIVABLE, NotRedrivable, redrive_due
from shared.operations.targets import SweepReport, SweepTarget, TableReport
from shared.pipeline.jobs import Job, VersionConflict
from shared.worker import Lifecycle, ticker

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = get_logger(__name__)
LEADER_KEY = "sweeper:leader"
# What the API, the console and the services import from here.
__all__ = ["LEADER_KEY", "REDRIVABLE", "NotRedrivable", "SweepReport", "SweepTarget",
           "Sweeper", "TableReport"]


class Sweeper(Lifecycle):
    """The sweeper worker: ``run()`` loops, :meth:`sweep_once` is one iteration.

    With ``leases`` set, only the holder of ``sweeper:leader`` sweeps; the lease is
    renewed every tick (``min(interval_s, ttl / 3)``) and between pages, so a long
    sweep that lost it stops early. ``leases=None`` makes this sweeper always active.
    """

    name = "sweeper"

    def __init__(self, *, targets: Sequence[SweepTarget], sqs: SQSClient,
                 queues: Sequence[str], leases: Leases | None, interval_s: float,
                 reconcile_after_s: float, page_size: int = 100, concurrency: int = 16,
                 lease_key: str = LEADER_KEY, handoffs: Sequence[HandoffCheck] = (),
                 start_check_after_s: float | None = None,
                 gauges_every_s: float = 0.0) -> None:
        super().__init__()
        self.targets = {t.short: t for t in targets}
        self.handoffs = tuple(handoffs)
        self.sqs = sqs
        self.queue_urls = QueueUrls(sqs)
        self.queues = tuple(queues)
        self.leases = leases
        self.interval_s = interval_s
        self.reconcile_after_s = reconcile_after_s
        self.start_check_after_s = min(start_check_after_s or reconcile_after_s,
                                       reconcile_after_s)
        self.page_size = page_size
        self.concurrency = concurrency
        self.lease_key = lease_key
        self.gauges_every_s = gauges_every_s
        self._gauged = -math.inf
        self.healthy = True
        self._lock = asyncio.Lock()
        self._leader = False
        self._renewed = -math.inf

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        self._begin()
        tick = self.interval_s if self.leases is None else min(self.interval_s,
                                                               self.leases.ttl_s / 3)
        last = -math.inf
        try:
            async for _ in ticker(tick, self._stop):
                try:
                    if time.monotonic() - last >= self.interval_s:
                        report = await self.sweep_once()
                        if report.swept:
                            last = time.monotonic()
                    else:
                        await self._lead()
                    self.healthy = True
                except Exception as exc:
                    self.healthy = False
                    last = time.monotonic()
                    WORKER_ERRORS.labels(worker="sweeper").inc()
                    log.warning("sweeper.sweep_failed", error=repr(exc))
        finally:
            await self._resign()

    async def _lead(self) -> bool:
        """Take or renew the leadership lease; always True without one."""
        if self.leases is None:
            self._leader = True
        else:
            was = self._leader
            self._leader = await self.leases.acquire(self.lease_key)
            self._renewed = time.monotonic()
            if self._leader != was:
                log.info("sweeper.leadership", leader=self._leader, owner=self.leases.owner)
        SWEEPER_LEADER.set(1 if self._leader else 0)
        return self._leader

    async def _resign(self) -> None:
        if self.leases is not None and self._leader:
            try:
                await self.leases.release(self.lease_key)
            except Exception as exc:
                log.warning("sweeper.release_failed", error=repr(exc))
        self._leader = False
        SWEEPER_LEADER.set(0)

    async def _still_leader(self, guarded: bool) -> bool:
        """Between pages: renew a lease-guarded sweep's lease when a third of its TTL passed."""
        if not guarded or self.leases is None:
            return not self._stop.is_set()
        if time.monotonic() - self._renewed >= self.leases.ttl_s / 3:
            await self._lead()
        return self._leader and not self._stop.is_set()

    # --- one sweep ------------------------------------------------------------------------

    async def run_once(self) -> SweepReport:
        return await self.sweep_once()

    async def sweep_once(self, *, force: bool = False, now: float | None = None) -> SweepReport:
        """One sweep over every table; ``force`` skips the leadership check (API, tests).

        ``now`` (Unix seconds) is when retries count as due and running jobs as
        overdue; tests pass it to look into the future.
        """
        leader = self._leader if force and self.leases is not None else await self._lead()
        if not (leader or force):
            return SweepReport(leader=False)
        async with self._lock:
            started = time.monotonic()
            report = SweepReport(leader=leader, swept=True)
            at = time.time() if now is None else now
            guarded = not force
            gauges = force or time.monotonic() - self._gauged >= self.gauges_every_s
            report.gauged = gauges
            for target in self.targets.values():
                table = report.tables[target.short] = TableReport(table=target.table)
                await self._retries(target, table, at, guarded, report)
                if report.aborted is None:
                    await self._reconcile(target, table, at, guarded, report)
                if report.aborted is not None:
                    break
                if gauges:
                    await self._backlog(target, table)
            if report.aborted is None:
                await self._handoffs(report, guarded)
            if report.aborted is None and gauges:
                await self._queue_depths(report)
                self._gauged = time.monotonic()
            report.duration_s = round(time.monotonic() - started, 4)
            SWEEP_DURATION.observe(report.duration_s)
            if report.aborted is None:
                SWEEPER_LAST_SUCCESS.set(time.time())
            acted = sum(t.redriven + t.failed + sum(t.reconciled.values()) + t.errors
                        for t in report.tables.values())
            (log.info if acted or report.aborted else log.debug)(
                "sweeper.swept", duration_s=report.duration_s, items_read=report.items_read,
                redriven=sum(t.redriven for t in report.tables.values()),
                failed=sum(t.failed for t in report.tables.values()), aborted=report.aborted)
            return report

    async def _handoffs(self, report: SweepReport, guarded: bool) -> None:
        """The hand-off checks, on real time (a test's ``now`` must not move their window)."""
        for check in self.handoffs:
            try:
                done = report.handoff[check.table] = await check.check(
                    still_leader=lambda: self._still_leader(guarded))
            except Exception as exc:   # its window stays unchecked: the next sweep repeats it
                WORKER_ERRORS.labels(worker="sweeper").inc()
                log.warning("handoff.check_failed", table=check.table, error=repr(exc))
                continue
            if done.aborted is not None:
                report.aborted = done.aborted
                return

    async def _pages(self, target: SweepTarget, state: str, due: int, table: TableReport,
                     guarded: bool, report: SweepReport,
                     each: Callable[[Job], Awaitable[None]]) -> None:
        """Every index item due by ``due``, page by page, ``concurrency`` at a time."""
        cursor: dict[str, Any] | None = None
        slots = asyncio.Semaphore(self.concurrency)

        async def one(job: Job) -> None:
            async with slots:
                try:
                    await each(job)
                except VersionConflict:
                    table.conflicts += 1
                    log.info("sweeper.conflict", request_id=job.request_id, table=target.table)
                except Exception as exc:
                    table.errors += 1
                    WORKER_ERRORS.labels(worker="sweeper").inc()
                    log.warning("sweeper.item_failed", request_id=job.request_id,
                                table=target.table, state=state, error=repr(exc))

        while True:
            jobs, cursor, scanned = await target.store.query_index(
                state, due_before=due, limit=self.page_size, cursor=cursor)
            table.scanned_count += scanned
            table.count += len(jobs)
            SWEEPER_ITEMS_READ.labels(table=target.table).inc(scanned)
            await asyncio.gather(*(one(job) for job in jobs))
            if cursor is None:
                return
            if not await self._still_leader(guarded):
                report.aborted = "lease lost" if not self._stop.is_set() else "shutting down"
                return

    async def _retries(self, target: SweepTarget, table: TableReport, now: float,
                       guarded: bool, report: SweepReport) -> None:
        async def one(job: Job) -> None:
            await redrive_due(target, job, table)

        await self._pages(target, "retry", int(now), table, guarded, report, one)

    async def _reconcile(self, target: SweepTarget, table: TableReport, now: float,
                         guarded: bool, report: SweepReport) -> None:
        overdue_before = now - self.reconcile_after_s

        async def check(job: Job) -> None:
            if float(job.raw.get("running_since", 0)) > overdue_before:
                # past the start check, not yet overdue: only a lost start is acted on
                late = await start_if_missing(target.starter, job)
                if late is not None:
                    table.reconciled[late] = table.reconciled.get(late, 0) + 1
                return
            outcome = await reconcile(target.store, target.starter, job, target.output_fields)
            if outcome == "deferred":  # no room in the task queue: the next sweep starts it
                table.deferred += 1
                ADMISSION_DEFERRED.labels(table=target.table).inc()
                return
            table.reconciled[outcome] = table.reconciled.get(outcome, 0) + 1

        await self._pages(target, "running", int(now - self.start_check_after_s), table,
                          guarded, report, check)

    async def _backlog(self, target: SweepTarget, table: TableReport) -> None:
        """``Select=COUNT`` per index (:meth:`JobStore.count_index`): reads no items."""
        for state in ("retry", "failed", "running"):
            total, scanned = await target.store.count_index(state)
            table.backlog_scanned_count += scanned
            SWEEPER_ITEMS_READ.labels(table=target.table).inc(scanned)
            table.backlog[state] = total
            JOBS.labels(table=target.table, state=state).set(total)

    async def _queue_depths(self, report: SweepReport) -> None:
        for queue in self.queues:
            try:
                attrs = await self.sqs.get_queue_attributes(
                    QueueUrl=await self.queue_urls.url(queue),
                    AttributeNames=["ApproximateNumberOfMessages"])
            except Exception as exc:
                log.warning("sweeper.queue_depth_failed", queue=queue, error=repr(exc))
                continue
            depth = int(attrs.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))
            report.queues[queue] = depth
            QUEUE_MESSAGES.labels(queue=queue).set(depth)

    def target(self, short: str) -> SweepTarget:
        try:
            return self.targets[short]
        except KeyError:
            raise LookupError(f"unknown table {short!r}: one of {sorted(self.targets)}") from None
