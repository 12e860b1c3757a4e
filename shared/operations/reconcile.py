"""Reconciling a job left ``RUNNING`` past its workflow's timeout with its execution's fate.

A job can stay ``RUNNING`` with nothing left to move it: the workflow's final
status write was lost, or the process crashed between the ``RUNNING`` write and
``StartExecution`` (``docs/architecture.md``, "Job states"). Past the workflow
timeout the execution has ended one way or another, so ``DescribeExecution``
settles it. The write is a version-conditioned :meth:`JobStore.transition`, so
a workflow write landing at the same moment wins and the reconcile steps aside
(:class:`VersionConflict`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shared.aws.clients import error_code
from shared.logs import get_logger
from shared.metrics import SWEEPER_RECONCILED
from shared.pipeline.jobs import Job, JobStore, Status
from shared.pipeline.starter import WorkflowStarter

log = get_logger(__name__)
STILL_RUNNING = frozenset({"RUNNING", "PENDING_REDRIVE"})


async def reconcile(store: JobStore, starter: WorkflowStarter, job: Job,
                    output_fields: Mapping[str, str]) -> str:
    """Settle one overdue ``RUNNING`` job; returns the outcome (the execution's status).

    A ``RECEIVED`` job past the threshold (it is in the running index from its
    creation) was never started: it is started now (outcome ``not_started``), or,
    when the task queue has no room (back-pressure), left for the next sweep
    (``deferred``).

    ``SUCCEEDED`` with a result: the success write was lost, so make it, with the
    result's ``output_fields`` (the job kind's) as the workflow would. ``SUCCEEDED`` on
    an error path: ``REJECTED`` for a business error, else ``RETRY_PENDING``.
    ``FAILED``/``TIMED_OUT``/``ABORTED`` or no execution (``missing``):
    ``RETRY_PENDING`` on the retry policy's backoff. Still running: left alone.
    Outcomes are counted in ``remitflow_sweeper_reconciled_total{table,outcome}``.
    """
    if job.status is Status.RECEIVED:
        # never started: its stream record was not processed in time (or is waiting
        # for room in the task queue: then it is left, still overdue, for the next sweep)
        if not await starter.may_start():
            return "deferred"
        started = await starter.begin(job, history="started by sweeper: stream record "
                                      "not processed")
        outcome = "not_started" if started else "conflict"
        SWEEPER_RECONCILED.labels(table=store.table, outcome=outcome).inc()
        log.warning("sweeper.started_stale_job", request_id=job.request_id, outcome=outcome)
        return outcome
    if job.status is not Status.RUNNING:
        return "skipped"
    name = job.execution_name
    arn = str(job.raw.get("execution_arn") or (starter.execution_arn(name) if name else ""))
    status, output = "MISSING", None
    if arn:
        try:
            desc = await starter.sfn.describe_execution(executionArn=arn)
            status, output = desc["status"], desc.get("output")
        except Exception as exc:
            if error_code(exc) != "ExecutionDoesNotExist":
                raise
    outcome = status.lower()
    if status in STILL_RUNNING:
        SWEEPER_RECONCILED.labels(table=store.table, outcome=outcome).inc()
        log.info("sweeper.still_running", request_id=job.request_id, execution=name)
        return outcome
    to = await settle_job(store, starter, job, status, output, output_fields,
                          note=f"reconciled by sweeper: execution {status}")
    SWEEPER_RECONCILED.labels(table=store.table, outcome=outcome).inc()
    log.info("sweeper.reconciled", request_id=job.request_id, table=store.table,
             execution=name, execution_status=status, to=to.value)
    return outcome


async def start_if_missing(starter: WorkflowStarter, job: Job) -> str | None:
    """A ``RUNNING`` job well past its start whose execution does not exist: start it.

    The starter writes ``RUNNING`` and then calls ``StartExecution``; a process killed
    in between leaves a job that nothing moves until the reconcile, a workflow timeout
    later. The sweep looks sooner (``REMITFLOW_START_CHECK_AFTER_S``): the execution's
    name is the attempt's own, so starting it now is the start that was lost (and
    already-started is success). Returns ``"started_late"``, or ``None`` when the
    execution exists (it is the workflow's, or the reconcile's, to settle).
    """
    name = job.execution_name
    if job.status is not Status.RUNNING or not name:
        return None
    arn = str(job.raw.get("execution_arn") or starter.execution_arn(name))
    try:
        await starter.sfn.describe_execution(executionArn=arn)
        return None
    except Exception as exc:
        if error_code(exc) != "ExecutionDoesNotExist":
            raise
    await starter.start(job)
    SWEEPER_RECONCILED.labels(table=starter.store.table, outcome="started_late").inc()
    log.warning("sweeper.started_late", request_id=job.request_id, execution=name)
    return "started_late"


async def settle_job(store: JobStore, starter: WorkflowStarter, job: Job, status: str,
                     output: str | None, output_fields: Mapping[str, str], *,
                     note: str) -> Status:
    """Write where a finished execution leaves ``job`` (the one implementation).

    Used by the reconciler (status from ``DescribeExecution``) and by execution
    status events (status from the event). The write is version-conditioned, so a
    workflow write or another settler landing first wins (:class:`VersionConflict`).
    """
    to, sets = settle(status, output, output_fields)
    to = store.success if to is Status.COMPLETED else to
    if to is Status.RETRY_PENDING:
        await store.transition(job, to, set_=sets, history=note,
                               sort_value=starter.retry.next_attempt_at(job.attempt, job=job))
    else:
        await store.transition(job, to, set_=sets, history=note)
    return to


def settle(status: str, output: str | None,
           output_fields: Mapping[str, str]) -> tuple[Status, dict[str, Any]]:
    """Where a finished execution leaves its job, and what to write with it.

    ``COMPLETED`` stands for the table's success status. The workflows end
    ``SUCCEEDED`` on their error paths too (after writing ``RETRY_PENDING`` or
    ``REJECTED``), so the output decides: an ``error`` or ``superseded`` key
    means the attempt did not succeed.
    """
    if status != "SUCCEEDED":
        what = "never started" if status == "MISSING" else f"ended {status}"
        return Status.RETRY_PENDING, {"last_error": f"execution {what} (reconciled)"}
    try:
        data = json.loads(output or "{}")
    except ValueError:
        data = {}
    data = data if isinstance(data, dict) else {}
    error = data.get("error")
    if isinstance(error, dict):
        name = str(error.get("Error", ""))
        cause = str(error.get("Cause") or name)[:1000]
        return (Status.REJECTED if name.startswith("remitflow.Business")
                else Status.RETRY_PENDING), {"last_error": cause}
    if "superseded" in data:
        return Status.RETRY_PENDING, {"last_error": "execution was superseded (reconciled)"}
    result = data.get("result")
    sets: dict[str, Any] = {}
    if isinstance(result, dict):
        for source, target in output_fields.items():
            if isinstance(result.get(source), str):
                sets[target] = result[source]
    return Status.COMPLETED, sets
