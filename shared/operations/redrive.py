"""Re-drive: a due retry starts its next attempt (or fails, its attempts spent), and an
operator re-drives a ``FAILED`` or ``REJECTED`` job as a fresh attempt.

Every write is a version-conditioned :meth:`~shared.pipeline.jobs.JobStore.transition`
and every start uses the attempt's deterministic execution name
(:meth:`~shared.pipeline.starter.WorkflowStarter.begin`): two sweepers racing never
start an attempt twice, the loser gets :class:`~shared.pipeline.jobs.VersionConflict`.
"""

from __future__ import annotations

from shared.logs import get_logger
from shared.metrics import ADMISSION_DEFERRED, SWEEPER_FAILED, SWEEPER_REDRIVES
from shared.operations.resolve import in_doubt
from shared.operations.targets import SweepTarget, TableReport
from shared.pipeline.jobs import Job, JobNotFound, Status, VersionConflict
from shared.pipeline.starter import redrive_span

log = get_logger(__name__)
REDRIVABLE = frozenset({Status.FAILED, Status.REJECTED})


class NotRedrivable(Exception):
    """Only ``FAILED`` and ``REJECTED`` jobs can be re-driven by hand."""


async def redrive_due(target: SweepTarget, job: Job, table: TableReport) -> None:
    """A retry that is due: its next attempt, or ``FAILED`` once its attempts are spent;
    deferred (due again at the next sweep) while the task queue is full."""
    if job.status is not Status.RETRY_PENDING:
        return
    if job.attempt >= target.policy.max_attempts_for(job):
        await target.store.transition(
            job, Status.FAILED, history=f"FAILED by sweeper after {job.attempt} attempt(s)")
        table.failed += 1
        SWEEPER_FAILED.labels(table=target.table).inc()
        log.warning("sweeper.failed", request_id=job.request_id, table=target.table,
                    attempts=job.attempt, last_error=str(job.raw.get("last_error"))[:300])
        return
    if not await target.starter.may_start():
        table.deferred += 1   # the task queue is full: still due at the next sweep
        ADMISSION_DEFERRED.labels(table=target.table).inc()
        return
    with redrive_span(job):
        running = await target.starter.begin(
            job, history=f"re-driven by sweeper as attempt {job.attempt + 1}")
    if running is None:
        raise VersionConflict(job.request_id)
    table.redriven += 1
    SWEEPER_REDRIVES.labels(table=target.table).inc()
    log.info("sweeper.redriven", request_id=job.request_id, table=target.table,
             execution=running.execution_name, attempt=running.attempt)


async def redrive_failed(target: SweepTarget, request_id: str, *,
                         history: str = "redrive by api") -> Job:
    """Re-drive a ``FAILED`` or ``REJECTED`` job as a fresh attempt, audited in ``history``.

    Raises :class:`JobNotFound`, :class:`NotRedrivable` (wrong state, or a send whose
    outcome is unknown) or :class:`VersionConflict` (someone else wrote the job meanwhile).
    """
    job = await target.store.get(request_id)
    if job is None:
        raise JobNotFound(request_id)
    if job.status not in REDRIVABLE:
        raise NotRedrivable(f"{request_id} is {job.status.value}; only FAILED or "
                            "REJECTED jobs can be re-driven")
    if in_doubt(job, target.in_doubt_field):
        raise NotRedrivable(f"{request_id}: a send's outcome is unknown; settle it with "
                            "resolve (sent or not_sent) instead")
    with redrive_span(job):
        running = await target.starter.begin(job, history=history)
    if running is None:
        raise VersionConflict(request_id)
    log.info("sweeper.manual_redrive", request_id=request_id, table=target.table,
             execution=running.execution_name, attempt=running.attempt)
    return running
