"""One request id, followed across every job table and every workflow execution.

Reads only by key: one ``GetItem`` per job table, and per attempt one
``DescribeExecution`` plus one ``GetExecutionHistory`` page. The execution of
attempt *n* needs no lookup table: its name is a pure function of request id and
attempt (:func:`shared.pipeline.jobs.execution_name`). Everything returned is
masked (:mod:`shared.redact`) and is what an operator page or answer may show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.aws.clients import error_code
from shared.operations.archive import ArchiveLookup
from shared.operations.targets import SweepTarget
from shared.pipeline.jobs import Job, execution_name, iso_at
from shared.redact import mask, mask_text

MAX_EXECUTIONS = 20
HISTORY_EVENTS = 200


@dataclass
class Execution:
    """One attempt's Step Functions execution, as far as it can be read."""

    attempt: int
    name: str
    arn: str
    status: str
    started_at: str | None = None
    stopped_at: str | None = None
    states: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class JobTrail:
    """One job table's item for the request id, with its history and executions."""

    table: str
    job: Job
    view: dict[str, Any]
    history: list[tuple[str, str]]
    executions: list[Execution]
    archived: str | None = None   # the archive object's key, for a job that expired


@dataclass
class Timeline:
    request_id: str
    trails: list[JobTrail]

    @property
    def found(self) -> bool:
        return bool(self.trails)

    def events(self) -> list[tuple[str, str, str]]:
        """Every state change we know of, in time order: (time, table, text).

        The job's ``history`` (sweeper and operator actions), its creation, each
        attempt's execution start and end, and a recorded delivery.
        """
        rows = []
        for t in self.trails:
            rows += [(at, t.table, text) for at, text in t.history]
            if t.view.get("created_at"):
                rows.append((str(t.view["created_at"]), t.table, "received: job created"))
            for run in t.executions:
                if run.started_at:
                    rows.append((run.started_at, t.table,
                                 f"attempt {run.attempt}: execution {run.name} started"))
                if run.stopped_at:
                    ended = f"attempt {run.attempt}: execution ended {run.status}"
                    rows.append((run.stopped_at, t.table,
                                 ended + (f" ({run.error})" if run.error else "")))
            if t.view.get("delivered_at"):
                rows.append((str(t.view["delivered_at"]), t.table,
                             f"delivered by {t.view.get('channel', '?')} as "
                             f"{t.view.get('delivery_id', '?')}"))
        return sorted(rows)


def split_history(entries: Any) -> list[tuple[str, str]]:
    """``"<ISO time> <text>"`` history entries as (time, masked text) pairs."""
    out = []
    for entry in entries if isinstance(entries, list) else []:
        at, _, text = str(entry).partition(" ")
        out.append((at, mask_text(text)))
    return out


def _iso(value: Any) -> str | None:
    """An SDK datetime in the jobs' own format (``…T12:00:00.123Z``), so times sort together."""
    if isinstance(value, datetime):
        return iso_at(value.timestamp())
    return str(value) if value else None


async def execution(target: SweepTarget, request_id: str, attempt: int) -> Execution:
    """DescribeExecution and the first page of GetExecutionHistory for one attempt."""
    name = execution_name(request_id, attempt)
    arn = target.starter.execution_arn(name)
    sfn = target.starter.sfn
    try:
        desc = await sfn.describe_execution(executionArn=arn)
    except Exception as exc:
        if error_code(exc) == "ExecutionDoesNotExist":
            return Execution(attempt, name, arn, "NOT_STARTED")
        return Execution(attempt, name, arn, "UNKNOWN", error=mask_text(str(exc))[:300])
    run = Execution(attempt, name, arn, str(desc["status"]),
                    started_at=_iso(desc.get("startDate")), stopped_at=_iso(desc.get("stopDate")))
    if desc.get("error") or desc.get("cause"):
        run.error = mask_text(f"{desc.get('error', '')}: {desc.get('cause', '')}")[:500]
    try:
        history = await sfn.get_execution_history(executionArn=arn, maxResults=HISTORY_EVENTS)
    except Exception as exc:
        run.error = run.error or f"history unavailable: {error_code(exc) or type(exc).__name__}"
        return run
    for event in history.get("events", []):
        entered = event.get("stateEnteredEventDetails")
        if entered and entered.get("name"):
            run.states.append(str(entered["name"]))
        for key in ("taskFailedEventDetails", "executionFailedEventDetails"):
            failed: dict[str, Any] = dict(event.get(key) or {})  # type: ignore[call-overload]
            if failed and not run.error:
                run.error = mask_text(f"{failed.get('error', '')}: "
                                      f"{failed.get('cause', '')}")[:500]
    return run


async def timeline(targets: Mapping[str, SweepTarget], request_id: str, *,
                   executions: bool = True, archive: ArchiveLookup | None = None) -> Timeline:
    """The request id in every table the targets cover, oldest attempt first; a job
    that expired from its table is read from ``archive`` (its trail says where)."""
    trails = []
    for short, target in targets.items():
        job = await target.store.get(request_id, consistent=False)
        if job is None:
            found = await archive.find(short, request_id) if archive is not None else None
            if found is not None:
                key, raw = found
                view = Job.from_raw(raw).public()
                view.pop("history", None)
                trails.append(JobTrail(short, Job.from_raw(raw), mask(view),
                                       split_history(raw.get("history")), [], archived=key))
            continue
        runs = []
        if executions:
            first = max(1, job.attempt - MAX_EXECUTIONS + 1)
            runs = [await execution(target, request_id, n) for n in range(first, job.attempt + 1)]
        view = job.public()
        view.pop("history", None)
        trails.append(JobTrail(short, job, mask(view), split_history(job.raw.get("history")),
                               runs))
    return Timeline(request_id, trails)
