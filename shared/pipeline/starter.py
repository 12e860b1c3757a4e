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
import json
import time
from typing import TYPE_CHECKING

from shared.aws.clients import error_code
from shared.aws.dynamo import from_item
from shared.logs import get_logger
from shared.metrics import WORKFLOW_STARTS
from shared.pipeline.jobs import Job, JobStore, Status, VersionConflict, execution_name, index_shard
from shared.retry import Backoff, backoff_s
from shared.worker import fault_point

if TYPE_CHECKING:
    from types_aiobotocore_stepfunctions import SFNClient

    from shared.stream.source import Record

log = get_logger(__name__)
_START_BACKOFF = Backoff(0.2, 2.0)   # bounded: start_attempts tries, a few seconds


class RetryPolicy:
    def __init__(self, max_attempts: int = 5, base_s: float = 30.0, cap_s: float = 3600.0):
        self.max_attempts = max_attempts
        self.base_s = base_s
        self.cap_s = cap_s

    def next_attempt_at(self, attempt: int, now: float | None = None) -> int:
        """When attempt ``attempt + 1`` may start, after attempt ``attempt`` failed."""
        return int((now or time.time()) + backoff_s(attempt, self.base_s, self.cap_s))


class WorkflowStarter:
    """Starts attempts of one table's state machine."""

    def __init__(self, sfn: SFNClient, store: JobStore, state_machine_arn: str,
                 retry: RetryPolicy, *, start_attempts: int = 3) -> None:
        self.sfn = sfn
        self.store = store
        self.state_machine_arn = state_machine_arn
        self.retry = retry
        self.start_attempts = start_attempts

    def execution_arn(self, name: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + name

    async def begin(self, job: Job, *, history: str | None = None) -> Job | None:
        """Move ``job`` to ``RUNNING`` as its next attempt and start that attempt.

        Returns the job as written, or ``None`` when another process got there first
        (it owns the attempt and starts it).
        """
        attempt = job.attempt + 1
        name = execution_name(job.request_id, attempt)
        try:
            running = await self.store.transition(
                job, Status.RUNNING, history=history,
                set_={"attempt": attempt, "execution_name": name,
                      "execution_arn": self.execution_arn(name)},
                sort_value=int(time.time()))
        except VersionConflict:
            return None
        fault_point("starter.after_running")
        await self.start(running)
        return running

    async def start(self, job: Job) -> None:
        """``StartExecution`` for the job's current attempt; already-started is success.

        On repeated failure the job goes to ``RETRY_PENDING`` so the sweeper re-drives
        it, rather than blocking the stream shard behind it.
        """
        name = job.execution_name or execution_name(job.request_id, job.attempt)
        retry_at = self.retry.next_attempt_at(job.attempt)
        body = json.dumps({"request_id": job.request_id, "attempt": job.attempt,
                           "retry_at": str(retry_at),
                           "retry_shard": index_shard(job.request_id, self.store.shards)})
        table = self.store.table
        for n in range(1, self.start_attempts + 1):
            try:
                await self.sfn.start_execution(stateMachineArn=self.state_machine_arn,
                                               name=name, input=body)
            except Exception as exc:
                if error_code(exc) == "ExecutionAlreadyExists":
                    WORKFLOW_STARTS.labels(table=table, outcome="already_started").inc()
                    log.info("workflow.already_started", request_id=job.request_id,
                             execution=name)
                    return
                log.warning("workflow.start_failed", request_id=job.request_id,
                            execution=name, error=str(exc), try_=n)
                if n < self.start_attempts:
                    await asyncio.sleep(_START_BACKOFF.delay(n))
                    continue
                WORKFLOW_STARTS.labels(table=table, outcome="failed").inc()
                await self._park(job, f"StartExecution failed: {exc}", retry_at)
                return
            WORKFLOW_STARTS.labels(table=table, outcome="started").inc()
            log.info("workflow.started", request_id=job.request_id, execution=name,
                     attempt=job.attempt)
            fault_point("starter.after_start")
            return

    async def _park(self, job: Job, reason: str, retry_at: int) -> None:
        try:
            await self.store.transition(job, Status.RETRY_PENDING,
                                        set_={"last_error": reason[:1000]}, sort_value=retry_at)
            log.warning("workflow.parked", request_id=job.request_id, reason=reason[:300])
        except VersionConflict:
            log.info("workflow.park_conflict", request_id=job.request_id)

    async def on_inserted(self, records: list[Record]) -> None:
        """Stream processor: each newly inserted job starts its first attempt.

        Uses the record's new image (no read). If the job moved on meanwhile (a
        replayed record after a crash), it re-reads: a job ``RUNNING`` on attempt 1
        gets its start re-issued (idempotent by name); anything else is skipped.
        """
        for record in records:
            if record.new_image is None:
                continue
            job = Job.from_raw(from_item(record.new_image))
            if job.status is not Status.RECEIVED:
                continue
            if await self.begin(job) is not None:
                continue
            current = await self.store.get(job.request_id)
            if current is not None and current.status is Status.RUNNING and current.attempt == 1:
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
                         self.retry.next_attempt_at(job.attempt))
