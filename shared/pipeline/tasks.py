"""Task worker: answers the workflow's ``.waitForTaskToken`` tasks from an SQS queue.

The workflow sends ``{task_token, request_id, attempt, execution_name}``; the worker
loads the job, checks the task still belongs to the job's current attempt, runs the
service's handler and answers ``SendTaskSuccess`` (handler output) or
``SendTaskFailure`` with ``remitflow.Business.<Reason>`` (not retryable: the job
becomes ``REJECTED``) or ``remitflow.Transient`` (the job becomes ``RETRY_PENDING``).
Before a failure is answered, the worker records it in the job's ``history`` and,
for a transient one, when the next attempt is due (``retry_due``, from the retry
policy, measured from now: the workflow copies it into ``next_attempt_at``).
While the handler runs, the worker heartbeats the task and
extends the message's visibility. The message is deleted only after the answer
was accepted (or the task is gone), so a crash mid-task re-runs the handler:
handlers must be idempotent (notification records deliveries before answering). A
second delivery of the same task message whose handler loses a version-checked write
to the first copy steps aside without answering (``outcome="duplicate"``).

A kind with ``inline_payload`` also gets ``input`` (the execution input), which
carries the stored payload when the starter found it small: the worker then runs
the handler without reading the item (:class:`Task`, ``item=None``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.aws.clients import error_code
from shared.aws.sqs import SqsWorker
from shared.logs import get_logger
from shared.metrics import HANDLER_DURATION, TASKS, WORKER_ERRORS

# BusinessError, TransientError: defined in errors.py (faults.py raises one), still
# importable from here.
from shared.pipeline.errors import BusinessError as BusinessError
from shared.pipeline.errors import TransientError as TransientError
from shared.pipeline.faults import fault_point
from shared.pipeline.jobs import Job, JobStore, Status, VersionConflict
from shared.pipeline.starter import RETRY_DUE, RetryPolicy
from shared.tracing import TRACEPARENT, SpanKind, exemplar, set_attributes, span

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef
    from types_aiobotocore_stepfunctions import SFNClient

log = get_logger(__name__)
TRANSIENT = "remitflow.Transient"
_GONE = {"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"}


class Superseded(Exception):
    """The task belongs to an attempt that is no longer the job's current one."""


@dataclass(frozen=True)
class Task:
    """One task to answer: the job as read, or only its payload from the task message.

    ``item`` is ``None`` when the execution input carried the payload (a kind with
    ``inline_payload``): the worker then read nothing, and a handler reads
    :attr:`payload`; :attr:`job` is for handlers that need the whole item (their
    kind does not inline, so the item is always read for them).
    """

    token: str
    request_id: str
    attempt: int
    execution_name: str
    item: Job | None
    inline_payload: str | None = None

    @property
    def job(self) -> Job:
        if self.item is None:
            raise RuntimeError(f"{self.request_id}: task answered from its message, "
                               "no item read (the kind inlines its payload)")
        return self.item

    @property
    def payload(self) -> str:
        """The job's stored payload: from the task message if inlined, else the item."""
        if self.inline_payload is not None:
            return self.inline_payload
        return str(self.job.raw["payload"])


Handler = Callable[[Task], Awaitable[dict[str, Any]]]


class TaskWorker(SqsWorker):
    def __init__(self, *, sqs: SQSClient, sfn: SFNClient, queue_name: str, queue_url: str,
                 store: JobStore, handler: Handler, max_in_flight: int = 32,
                 wait_s: int = 10, heartbeat_s: float = 20.0, visibility_s: int = 70,
                 retry: RetryPolicy | None = None, dlq_url: str | None = None) -> None:
        super().__init__(sqs, queue_name, queue_url, worker="tasks",
                         max_in_flight=max_in_flight, wait_s=wait_s, visibility_s=visibility_s)
        self.dlq_url = dlq_url  # where a message that is not a task goes (with its reason)
        self.sfn = sfn
        self.store = store
        self.handler = handler
        self.heartbeat_s = heartbeat_s
        self.retry = retry

    async def dispatch(self, messages: list[MessageTypeDef]) -> None:
        """Each task answered on its own (heartbeats while its handler runs)."""
        for message in messages:
            await self.receiver.slots.acquire()
            self.spawn(self._run_one(message))

    async def _run_one(self, message: MessageTypeDef) -> None:
        try:
            await self._answer(message)
        except Exception as exc:
            WORKER_ERRORS.labels(worker="tasks").inc()
            log.error("tasks.failed", queue=self.queue, error=repr(exc))
        finally:
            self.receiver.slots.release()

    async def _answer(self, message: MessageTypeDef) -> None:
        """One ``task`` span per message (received → answered) in the trace the
        workflow's input carried; the handler and the answer are its children."""
        body = task_body(message.get("Body") or "")
        if body is None and self.dlq_url is not None:
            # Not a task (only Step Functions should write here): kept with its reason,
            # never retried until SQS's redrive moves it without one.
            await self.dead_letter(message, dlq_url=self.dlq_url, reason="invalid_task",
                                   detail="not a task message (task_token, request_id, "
                                          "execution_name)")
            WORKER_ERRORS.labels(worker="tasks").inc()
            log.warning("tasks.invalid", queue=self.queue, message_id=message.get("MessageId"))
            await self._delete(message)
            return
        body = body or json.loads(message.get("Body", "{}"))
        with span("task", parent=body.get(TRACEPARENT), kind=SpanKind.CONSUMER,
                  request_id=body.get("request_id"), attempt=body.get("attempt"),
                  execution=body.get("execution_name"), messaging__system="aws_sqs",
                  messaging__destination__name=self.queue):
            await self._answer_traced(message, body)

    async def _answer_traced(self, message: MessageTypeDef, body: dict[str, Any]) -> None:
        token = body["task_token"]
        request_id = body["request_id"]
        inline = (body.get("input") or {}).get("payload")
        if isinstance(inline, str):
            # No item read: the execution input carried the payload. The checks below
            # are skipped, which is safe: every status write of the attempt (the
            # workflow's Mark* states) is conditioned on its execution name and
            # RUNNING, so a superseded attempt changes nothing; its handler may
            # publish once more, which the subscriber absorbs (one job per request id).
            task = Task(token=token, request_id=request_id,
                        attempt=int(body.get("attempt", 1)),
                        execution_name=body["execution_name"], item=None,
                        inline_payload=inline)
            await self._run_handler(message, task)
            return
        job = await self.store.get(request_id)
        if job is None or job.status is not Status.RUNNING \
                or job.execution_name != body.get("execution_name"):
            await self._send_failure(token, "remitflow.Superseded",
                                     "task belongs to an attempt that is no longer current",
                                     request_id)
            set_attributes(outcome="superseded")
            await self._delete(message)
            return
        task = Task(token=token, request_id=request_id, attempt=int(body.get("attempt", 1)),
                    execution_name=body["execution_name"], item=job)
        await self._run_handler(message, task)

    async def _run_handler(self, message: MessageTypeDef, task: Task) -> None:
        """Heartbeats while the handler runs, then the answer, then the delete."""
        token, request_id = task.token, task.request_id

        async def heartbeat() -> None:
            await self.sfn.send_task_heartbeat(taskToken=token)

        beat = asyncio.create_task(self.receiver.keep_visible(
            [message], every_s=self.heartbeat_s, beat=heartbeat))
        started = time.perf_counter()
        try:
            with span("handle", request_id=request_id, attempt=task.attempt):
                output = await self.handler(task)
        except Superseded as exc:
            await self._send_failure(token, "remitflow.Superseded", str(exc), request_id)
            TASKS.labels(queue=self.queue, outcome="superseded", error="").inc()
            set_attributes(outcome="superseded")
        except VersionConflict as exc:
            await self._lost_race(task, exc)
        except BusinessError as exc:
            await self._record_failure(task, f"rejected ({exc.reason}): {exc.detail}",
                                       transient=False)
            await self._send_failure(token, exc.error_name, exc.detail, request_id)
            TASKS.labels(queue=self.queue, outcome="business_error", error=exc.reason).inc()
            set_attributes(outcome="business_error", error__type=exc.reason)
        except Exception as exc:
            cause = str(exc) or type(exc).__name__
            await self._record_failure(task, cause, transient=True)
            await self._send_failure(token, TRANSIENT, cause, request_id)
            TASKS.labels(queue=self.queue, outcome="transient_error",
                         error=type(exc).__name__).inc()
            set_attributes(outcome="transient_error", error__type=type(exc).__name__)
        else:
            fault_point("tasks.before_answer")
            await self._succeed(token, output, request_id, task.attempt)
            TASKS.labels(queue=self.queue, outcome="success", error="").inc()
            set_attributes(outcome="success")
        finally:
            beat.cancel()
            HANDLER_DURATION.labels(queue=self.queue).observe(time.perf_counter() - started,
                                                              exemplar=exemplar())
        await self._delete(message)

    async def _lost_race(self, task: Task, exc: VersionConflict) -> None:
        """The handler's version-checked write lost to another writer of this job.

        While the job is still ``RUNNING`` under this task's execution, the other writer
        is this same attempt: a second delivery of the task message (SQS delivers at
        least once) handled by another copy, which answers the task. This copy steps
        aside without answering: failing the token would fail an attempt that another
        copy is completing (a notification already sent, then retried). If that copy
        dies, the task's heartbeat timeout retries the attempt. Otherwise the attempt was
        superseded, and is answered as such.
        """
        current = await self.store.get(task.request_id)
        if current is not None and current.status is Status.RUNNING \
                and current.execution_name == task.execution_name:
            TASKS.labels(queue=self.queue, outcome="duplicate", error="").inc()
            set_attributes(outcome="duplicate")
            log.info("task.duplicate", request_id=task.request_id, queue=self.queue,
                     execution=task.execution_name)
            return
        await self._send_failure(task.token, "remitflow.Superseded",
                                 f"the job changed under this attempt ({exc})", task.request_id)
        TASKS.labels(queue=self.queue, outcome="superseded", error="").inc()
        set_attributes(outcome="superseded")

    async def _record_failure(self, task: Task, cause: str, *, transient: bool) -> None:
        """History line for the failed attempt and, if transient, when the next is due.

        Best effort: if the job moved on (superseded) or the write races, nothing is
        written and the workflow falls back to the due time computed at start.
        """
        try:
            job = await self.store.get(task.request_id)
            if job is None or job.status is not Status.RUNNING \
                    or job.execution_name != task.execution_name:
                return
            note = f"attempt {job.attempt} failed: {cause[:300]}"
            sets: dict[str, Any] = {}
            if transient and self.retry is not None:
                left = self.retry.max_attempts_for(job) - job.attempt
                due = self.retry.next_attempt_at(job.attempt, job=job) if left > 0 \
                    else int(time.time())
                sets[RETRY_DUE] = due
                note += (f"; attempt {job.attempt + 1} due at "
                         f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(due))}"
                         if left > 0 else "; no attempts left")
            await self.store.update(job, sets, history=note)
        except VersionConflict:
            log.info("task.failure_note_conflict", request_id=task.request_id)
        except Exception as exc:
            log.warning("task.failure_note_failed", request_id=task.request_id, error=repr(exc))

    async def _succeed(self, token: str, output: dict[str, Any], request_id: str,
                       attempt: int) -> None:
        """``SendTaskSuccess`` in an ``answer`` span (a handler that publishes does so
        inside its own ``publish`` span, before this answer)."""
        with span("answer", kind=SpanKind.INTERNAL, request_id=request_id, attempt=attempt):
            await self._send_success(token, output, request_id)

    async def _send_success(self, token: str, output: dict[str, Any], request_id: str) -> None:
        try:
            await self.sfn.send_task_success(taskToken=token, output=json.dumps(output))
            log.info("task.succeeded", request_id=request_id, queue=self.queue)
        except Exception as exc:
            if error_code(exc) not in _GONE:
                raise
            log.info("task.gone", request_id=request_id, error=error_code(exc))

    async def _send_failure(self, token: str, error: str, cause: str, request_id: str) -> None:
        try:
            await self.sfn.send_task_failure(taskToken=token, error=error[:256],
                                             cause=cause[:32000])
            log.info("task.failed", request_id=request_id, error=error, cause=cause[:300])
        except Exception as exc:
            if error_code(exc) not in _GONE:
                raise
            log.info("task.gone", request_id=request_id, error=error_code(exc))

    async def _delete(self, message: MessageTypeDef) -> None:
        await self.deleter.delete(message)


def task_body(text: str) -> dict[str, Any] | None:
    """A task message's JSON, or None when it is not one (no token, id or execution)."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) and body[k]
            for k in ("task_token", "request_id", "execution_name")):
        return None
    return body
