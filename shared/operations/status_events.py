"""Execution status events: settle a job the moment its workflow ends.

Step Functions sends an "Execution Status Change" event to EventBridge for every
execution that ends; a rule (created by bootstrap) routes ``FAILED``,
``TIMED_OUT`` and ``ABORTED`` of our state machines to the execution-status
queue, and this worker settles the job exactly as the reconciler would
(:func:`shared.operations.reconcile.settle_job`, one implementation). The
reconciler stays as the safety net for an event that never comes
(``docs/architecture.md``, "Execution status events").

Guarantees: an event is applied only to the attempt it describes: the job is
found by the request id in the execution's input, and the write happens only if
the job is still ``RUNNING`` under that execution name (then version-conditioned).
A stale or duplicate event (an older attempt, a job already settled) is
acknowledged and counted, never applied; an event for an execution we do not
know is counted and dropped; a message that is not an event goes to the DLQ with
a reason. A DynamoDB failure leaves the message on the queue to come back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.aws.sqs import EventQueueWorker, NotAnEvent
from shared.logs import get_logger
from shared.metrics import EXECUTION_EVENTS
from shared.operations.reconcile import settle_job
from shared.operations.targets import SweepTarget
from shared.pipeline.jobs import Status, VersionConflict, execution_name
from shared.schedule import Schedule

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = get_logger(__name__)
DETAIL_TYPE = "Step Functions Execution Status Change"
SETTLING = ("FAILED", "TIMED_OUT", "ABORTED")


class NotAnExecutionEvent(NotAnEvent):
    """The message is not an execution status event we can read."""


@dataclass(frozen=True)
class StatusEvent:
    state_machine_arn: str
    name: str
    status: str
    request_id: str
    attempt: int
    output: str | None

    @classmethod
    def parse(cls, body: str) -> StatusEvent:
        try:
            event = json.loads(body)
            detail = event["detail"]
            if event.get("detail-type") != DETAIL_TYPE:
                raise NotAnExecutionEvent(f"detail-type {event.get('detail-type')!r}")
            data = json.loads(detail.get("input") or "{}")
            return cls(state_machine_arn=str(detail["stateMachineArn"]),
                       name=str(detail["name"]), status=str(detail["status"]),
                       request_id=str(data["request_id"]), attempt=int(data["attempt"]),
                       output=detail.get("output"))
        except NotAnExecutionEvent:
            raise
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise NotAnExecutionEvent(f"{type(exc).__name__}: {exc}"[:300]) from exc


class ExecutionEvents(EventQueueWorker):
    """Consumes the execution-status queue for every job kind the sweeper looks after."""

    def __init__(self, *, sqs: SQSClient, queue_name: str, queue_url: str, dlq_url: str,
                 targets: Mapping[str, SweepTarget], max_in_flight: int = 10,
                 wait_s: int = 10, visibility_s: int = 60,
                 backoff: Schedule | None = None) -> None:
        super().__init__(sqs, queue_name, queue_url, dlq_url=dlq_url, worker="events",
                         max_in_flight=max_in_flight, wait_s=wait_s, visibility_s=visibility_s,
                         backoff=backoff)
        self.targets = dict(targets)    # state machine ARN → target

    async def handle(self, body: str) -> str:
        """Apply one event; returns the outcome (applied, stale, unknown)."""
        event = StatusEvent.parse(body)
        target = self.targets.get(event.state_machine_arn)
        table = target.table if target else "-"
        outcome = await self._apply(target, event) if target else "unknown"
        EXECUTION_EVENTS.labels(table=table, status=event.status, outcome=outcome).inc()
        log.info("events.execution_status", request_id=event.request_id,
                 execution=event.name, status=event.status, outcome=outcome, table=table)
        return outcome

    async def _apply(self, target: SweepTarget, event: StatusEvent) -> str:
        if event.status not in SETTLING:
            return "stale"
        if execution_name(event.request_id, event.attempt) != event.name:
            return "unknown"
        job = await target.store.get(event.request_id)
        if job is None:
            return "unknown"
        if job.status is not Status.RUNNING or job.execution_name != event.name:
            return "stale"
        try:
            await settle_job(target.store, target.starter, job, event.status, event.output,
                             target.output_fields,
                             note=f"settled by execution status event: {event.status}")
        except VersionConflict:
            return "stale"
        return "applied"

    def invalid(self, detail: str) -> None:
        EXECUTION_EVENTS.labels(table="-", status="-", outcome="invalid").inc()
