"""Starting one attempt of a job's workflow, idempotently.

The order is: write the job ``RUNNING`` with the attempt's deterministic execution
name (conditioned on version), then ``StartExecution`` with that name. A crash
between the two leaves a ``RUNNING`` job whose execution may not exist: replaying
the stream record (or the sweeper's reconcile) starts it again under the same
name, and Step Functions refuses a second execution with that name, so an
attempt runs at most once. The workflow's own status writes are conditioned on
the execution name, so a superseded attempt can never overwrite a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.aws.clients import error_code
from shared.aws.dynamo import from_item
from shared.logs import get_logger
from shared.metrics import WORKFLOW_STARTS
from shared.pipeline.budgets import inline_size
from shared.pipeline.faults import fault_point
from shared.pipeline.jobs import Job, JobStore, Status, VersionConflict, execution_name, index_shard
from shared.pipeline.lifecycle import expiry
from shared.retry import pause
from shared.schedule import Schedule
from shared.tracing import TRACEPARENT, set_attributes, span, traceparent

if TYPE_CHECKING:
    from types_aiobotocore_stepfunctions import SFNClient

    from shared.pipeline.admission import TaskQueueGate
    from shared.stream.source import Record

log = get_logger(__name__)
_START_BACKOFF = Schedule.exponential(0.2, 2.0)   # bounded: start_attempts tries, a few seconds
RETRY_DUE = "retry_due"
"""Job attribute: when the next attempt may start, written by the task worker as it
reports a failure; the workflow's ``MarkRetry`` copies it into ``next_attempt_at``."""

DEFAULT_SCHEDULE = Schedule((30.0, 60.0, 120.0, 240.0))  # 5 attempts, 30 s doubling


@dataclass(frozen=True)
class RetryPolicy:
    """When a job's next attempt may start, and how many attempts it gets.

    A schedule is the list of delays between attempts: attempt ``n + 1`` may start
    ``schedule.delays[n - 1]`` after attempt ``n`` failed (measured from when the failure
    was recorded), so a job gets ``len(schedule) + 1`` attempts. ``by_value``
    holds schedules chosen by the value of the job attribute ``select`` (the
    notification kind selects by ``channel``); jobs without a match use
    ``schedule``. Every delay is divided by ``time_scale`` (``remitflow dev``
    compresses time instead of cutting attempts).
    """

    schedule: Schedule = DEFAULT_SCHEDULE
    by_value: Mapping[str, Schedule] = field(default_factory=dict)
    select: str | None = None
    time_scale: float = 1.0

    def schedule_for(self, job: Job | None = None) -> Schedule:
        if job is not None and self.select:
            value = job.raw.get(self.select)
            if isinstance(value, str) and value in self.by_value:
                return self.by_value[value]
        return self.schedule

    @property
    def max_attempts(self) -> int:
        """Attempts of a job that selects no particular schedule."""
        return self.schedule.attempts

    def max_attempts_for(self, job: Job | None = None) -> int:
        return self.schedule_for(job).attempts

    def delay_s(self, attempt: int, job: Job | None = None) -> float:
        """Seconds between the failure of attempt ``attempt`` (1-based) and the next one."""
        return self.schedule_for(job).delay(attempt) / self.time_scale

    def next_attempt_at(self, attempt: int, now: float | None = None,
                        job: Job | None = None) -> int:
        """When attempt ``attempt + 1`` may start, after attempt ``attempt`` failed."""
        return math.ceil((time.time() if now is None else now) + self.delay_s(attempt, job))


def redrive_span(job: Job) -> contextlib.AbstractContextManager[object]:
    """A re-drive starts a new trace, linked to the job's original one (its stored
    ``traceparent``): a retry hours later is its own story, found from the first."""
    return span("redrive", new_trace=True, links=[job.raw.get(TRACEPARENT)],
                request_id=job.request_id, attempt=job.attempt + 1,
                remitflow__status=job.status.value)


@dataclass(frozen=True)
class Inliner:
    """What a starter puts of a payload into the execution input: the kind's task view
    (``None``: not inlined) within ``max_bytes`` (escaped)."""

    view: Callable[[str], str | None]
    max_bytes: int


class WorkflowStarter:
    """Starts attempts of one table's state machine.

    With ``inline`` (a kind with ``inline_payload``), the task's view of the stored
    ``payload`` goes into the execution input when its escaped size is within the
    limit, and the task worker answers without reading the item; a larger one, or a
    job read without its payload, is left out and the task worker reads the item.
    """

    def __init__(self, sfn: SFNClient, store: JobStore, state_machine_arn: str,
                 retry: RetryPolicy, *, start_attempts: int = 3,
                 gate: TaskQueueGate | None = None, inline: Inliner | None = None) -> None:
        self.inline = inline
        self.sfn = sfn
        self.store = store
        self.state_machine_arn = state_machine_arn
        self.retry = retry
        self.start_attempts = start_attempts
        self.gate = gate
        # Set at shutdown (the stream consumer's): a start between tries is parked at once.
        self.stop = asyncio.Event()

    async def may_start(self) -> bool:
        """Whether the task queue has room for one more attempt now (no gate: always).

        For starters that can leave a job for later (the sweeper); the stream starter
        waits instead (:meth:`on_inserted`).
        """
        return self.gate is None or await self.gate.try_admit()

    def execution_arn(self, name: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + name

    async def begin(self, job: Job, *, history: str | None = None) -> Job | None:
        """Move ``job`` to ``RUNNING`` as its next attempt and start that attempt.

        Returns the job as written, or ``None`` when another process got there first
        (it owns the attempt and starts it).
        """
        attempt = job.attempt + 1
        name = execution_name(job.request_id, attempt)
        with self._span(job, attempt):
            try:
                running = await self.store.transition(
                    job, Status.RUNNING, history=history or f"attempt {attempt} started",
                    set_={"attempt": attempt, "execution_name": name,
                          "execution_arn": self.execution_arn(name)},
                    remove=(RETRY_DUE,), sort_value=int(time.time()))
            except VersionConflict:
                set_attributes(outcome="conflict")
                return None
            fault_point("starter.after_running")
            await self.start(running)
            return running

    def _span(self, job: Job, attempt: int) -> contextlib.AbstractContextManager[object]:
        """``start`` (stream record or re-drive → execution started), in the job's trace
        unless a span is current (a sweeper re-drive's own)."""
        return span("start", parent=job.raw.get(TRACEPARENT), request_id=job.request_id,
                    attempt=attempt, remitflow__table=self.store.table)

    async def start(self, job: Job) -> None:
        """``StartExecution`` for the job's current attempt; already-started is success.

        On repeated failure the job goes to ``RETRY_PENDING`` so the sweeper re-drives
        it, rather than blocking the stream shard behind it; the attempt is handed back
        (a failure to start is not a failure of the work). ``retry_at`` in the input is
        only the workflow's fallback for an attempt no task worker answered (a
        timeout); a worker records the due time when it reports the failure
        (``retry_due``, see :class:`~shared.pipeline.tasks.TaskWorker`).
        """
        name = job.execution_name or execution_name(job.request_id, job.attempt)
        retry_at = self.retry.next_attempt_at(job.attempt, job=job)
        data = {"request_id": job.request_id, "attempt": job.attempt,
                "retry_at": str(retry_at),
                # the workflow's final writes set it: DynamoDB's TTL expires the job then
                "expires_at": str(expiry(self.store.retention_s)),
                "retry_shard": index_shard(job.request_id, self.store.shards),
                # the workflow passes it to its task and its published message
                TRACEPARENT: traceparent(fallback=job.raw.get(TRACEPARENT))}
        payload = job.raw.get("payload")
        if self.inline is not None and isinstance(payload, str):
            view = self.inline.view(payload)
            if view is not None and inline_size(view, self.inline.max_bytes) > 0:
                data["payload"] = view
        body = json.dumps(data)
        set_attributes(execution=name)
        table = self.store.table
        for n in range(1, self.start_attempts + 1):
            try:
                await self.sfn.start_execution(stateMachineArn=self.state_machine_arn,
                                               name=name, input=body)
            except Exception as exc:
                if error_code(exc) == "ExecutionAlreadyExists":
                    WORKFLOW_STARTS.labels(table=table, outcome="already_started").inc()
                    set_attributes(outcome="already_started")
                    log.info("workflow.already_started", request_id=job.request_id,
                             execution=name)
                    return
                log.warning("workflow.start_failed", request_id=job.request_id,
                            execution=name, error=str(exc), try_=n)
                if n < self.start_attempts and not await pause(self.stop, _START_BACKOFF, n):
                    continue
                WORKFLOW_STARTS.labels(table=table, outcome="failed").inc()
                set_attributes(outcome="failed", error__type=error_code(exc) or "error")
                await self._park(job, f"StartExecution failed: {exc}",
                                 int(time.time() + max(1.0, self.retry.delay_s(1, job))),
                                 give_back=True)
                return
            WORKFLOW_STARTS.labels(table=table, outcome="started").inc()
            set_attributes(outcome="started")
            log.info("workflow.started", request_id=job.request_id, execution=name,
                     attempt=job.attempt)
            fault_point("starter.after_start")
            return

    async def _park(self, job: Job, reason: str, retry_at: int, *,
                    give_back: bool = False) -> None:
        sets: dict[str, object] = {"last_error": reason[:1000]}
        note = f"parked: {reason[:200]}"
        if give_back and job.attempt > 0:
            # the execution never ran: the re-drive reuses this attempt (and its name)
            sets["attempt"] = job.attempt - 1
            note += f"; attempt {job.attempt} not consumed"
        try:
            await self.store.transition(job, Status.RETRY_PENDING, set_=sets, history=note,
                                        sort_value=retry_at)
            log.warning("workflow.parked", request_id=job.request_id, reason=reason[:300])
        except VersionConflict:
            log.info("workflow.park_conflict", request_id=job.request_id)

    async def on_inserted(self, records: list[Record]) -> None:
        """Stream processor: each newly inserted job starts its first attempt.

        Uses the record's new image (no read). If the job moved on meanwhile (a
        replayed record after a crash), it re-reads: a job ``RUNNING`` on attempt 1
        gets its start re-issued (idempotent by name); anything else is skipped.

        With a gate, each start first waits for room in the task queue
        (:mod:`shared.pipeline.admission`): the job stays ``RECEIVED`` and the
        record unprocessed (so not checkpointed) meanwhile; at shutdown the wait
        raises :class:`~shared.pipeline.admission.Deferred` and the record is replayed.
        """
        for record in records:
            if record.new_image is None:
                continue
            job = Job.from_raw(from_item(record.new_image))
            if job.status is not Status.RECEIVED:
                continue
            if self.gate is not None:
                await self.gate.admit()
            if await self.begin(job) is not None:
                continue
            current = await self.store.get(job.request_id)
            if current is not None and current.status is Status.RUNNING and current.attempt == 1:
                with self._span(current, current.attempt):
                    await self.start(current)

    async def park_record(self, record: Record) -> None:
        """Stream poison handler: a record that kept failing parks its job ``RETRY_PENDING``.

        Only a job still ``RECEIVED`` is parked (the sweeper re-drives it later); a job
        that moved on meanwhile is already someone else's to finish, so nothing changes.
        """
        if record.new_image is None:
            return
        request_id = str(from_item(record.new_image)["request_id"])
        job = await self.store.get(request_id)
        if job is None or job.status is not Status.RECEIVED:
            log.info("workflow.park_skipped", request_id=request_id,
                     status=job.status.value if job else None)
            return
        await self._park(job, "stream processing failed repeatedly",
                         self.retry.next_attempt_at(job.attempt, job=job))
