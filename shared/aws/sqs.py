"""The SQS half shared by the intake and the task worker.

:class:`Receiver` long-polls with at most ``max_in_flight`` messages held (each
receive asks for ``min(10, free slots)``), backs off with jitter when SQS is
unreachable and says so in ``healthy``. :class:`Deleter` gathers acknowledgements
from concurrent handlers into ``DeleteMessageBatch`` calls of up to ten (one
request instead of ten), flushing after ``linger_s`` or when ten are waiting; a
message is acknowledged only once its handler has finished, so a crash before
the flush means a redelivery, never a loss.

The linger (:data:`DELETE_LINGER_S`, half a second) is off the pipeline's path: a
message is deleted after its effect is durable (the job stored, the task
answered), so waiting for company costs no latency, and at a few messages a
second it makes one delete request serve two or three messages instead of one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from shared.logs import get_logger
from shared.metrics import WORKER_ERRORS
from shared.retry import pause
from shared.schedule import Schedule
from shared.worker import Lifecycle

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

log = get_logger(__name__)
DELETE_LINGER_S = 0.5
# The default back-off of a message that could not be handled now (the settings'
# ``REMITFLOW_INTAKE_RETRY_BASE_S`` / ``_CAP_S`` defaults).
DEFER_BASE_S, DEFER_CAP_S = 2.0, 900.0


class Receiver:
    def __init__(self, sqs: SQSClient, queue_url: str, *, worker: str, max_in_flight: int,
                 wait_s: int, visibility_s: int, with_attributes: bool = False) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.worker = worker
        self.wait_s = wait_s
        self.visibility_s = visibility_s
        self.slots = asyncio.Semaphore(max_in_flight)
        self.extra: dict[str, Any] = (
            {"MessageAttributeNames": ["All"],
             "MessageSystemAttributeNames": ["SentTimestamp", "ApproximateReceiveCount"]}
            if with_attributes else {})
        self.healthy = True
        self._failures = 0
        self._backoff = Schedule.exponential(0.5, 30.0)

    @property
    def free(self) -> int:
        return self.slots._value

    async def receive(self, stop: asyncio.Event) -> list[MessageTypeDef]:
        """One long poll for as many messages as there are free slots ([] when idle)."""
        if self.free == 0:  # wait for a handler to finish
            await self.slots.acquire()
            self.slots.release()
        if stop.is_set():
            return []
        try:
            resp = await self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=min(10, self.free),
                WaitTimeSeconds=self.wait_s, VisibilityTimeout=self.visibility_s, **self.extra)
        except Exception as exc:
            self._failures += 1
            self.healthy = False
            WORKER_ERRORS.labels(worker=self.worker).inc()
            log.warning(f"{self.worker}.receive_failed", queue_url=self.queue_url,
                        error=str(exc), failures=self._failures)
            await pause(stop, self._backoff, self._failures)
            return []
        self._failures = 0
        self.healthy = True
        return list(resp.get("Messages", []))

    async def delay(self, message: MessageTypeDef, seconds: int) -> None:
        """Hide one message for ``seconds`` (a backoff), best effort."""
        try:
            await self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=max(0, min(43_200, seconds)))
        except Exception as exc:
            log.warning(f"{self.worker}.visibility_failed", error=str(exc))

    async def set_visibility(self, messages: Sequence[MessageTypeDef], seconds: int) -> None:
        """Extend (heartbeat) or hand back (0) messages, best effort."""
        for start in range(0, len(messages), 10):
            entries: list[Any] = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"],
                                   "VisibilityTimeout": seconds}
                                  for i, m in enumerate(messages[start:start + 10])]
            try:
                await self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url,
                                                               Entries=entries)
            except Exception as exc:
                log.warning(f"{self.worker}.visibility_failed", error=str(exc))


    async def keep_visible(self, messages: Sequence[MessageTypeDef], *, every_s: float,
                           beat: Callable[[], Awaitable[None]] | None = None) -> None:
        """Until cancelled: every ``every_s``, run ``beat`` (if any), then extend visibility.

        The one visibility keeper of the intake (slow batches) and the task worker
        (where ``beat`` is the workflow heartbeat). Failures are logged and the next
        beat tries again; the caller cancels this task when the work is done.
        """
        while True:
            await asyncio.sleep(every_s)
            try:
                if beat is not None:
                    await beat()
                await self.set_visibility(messages, self.visibility_s)
            except Exception as exc:
                log.warning(f"{self.worker}.heartbeat_failed", error=str(exc))


class Deleter:
    """Batches deletes of finished messages (``await deleter.delete(message)``)."""

    def __init__(self, sqs: SQSClient, queue_url: str, *,
                 linger_s: float = DELETE_LINGER_S) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.linger_s = linger_s
        self._pending: list[tuple[MessageTypeDef, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def delete(self, message: MessageTypeDef) -> None:
        """Returns once the message's batch was deleted (or the failure was logged)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((message, done))
        if len(self._pending) >= 10:
            self._flush_now()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self._flush_now)
        await done

    async def delete_many(self, messages: Sequence[MessageTypeDef]) -> None:
        await asyncio.gather(*(self.delete(m) for m in messages))

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch, self._pending = self._pending[:10], self._pending[10:]
            asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[tuple[MessageTypeDef, asyncio.Future[None]]]) -> None:
        entries: list[Any] = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                              for i, (m, _) in enumerate(batch)]
        try:
            resp = await self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            for failed in resp.get("Failed", []):
                log.warning("sqs.delete_failed", queue_url=self.queue_url,
                            detail=failed.get("Message"))
        except Exception as exc:
            # Not deleted: the message comes back after its visibility timeout and its
            # (idempotent) handler runs again. Nothing is lost.
            log.warning("sqs.delete_failed", queue_url=self.queue_url, error=str(exc))
        finally:
            for _, done in batch:
                if not done.done():
                    done.set_result(None)


class SqsWorker(Lifecycle):
    """What every SQS-fed worker has: a receiver, a deleter, a stop flag and the loop.

    ``run()`` calls :meth:`poll_once` until shutdown, then waits for the work it
    dispatched (it finishes and acknowledges); messages received after the stop
    are handed back at once. ``shutdown()`` is idempotent and safe before
    ``run()``; a second ``run()`` raises. ``healthy`` is false while SQS cannot be
    reached. Subclasses implement :meth:`dispatch`.
    """

    def __init__(self, sqs: SQSClient, queue_name: str, queue_url: str, *, worker: str,
                 max_in_flight: int, wait_s: int, visibility_s: int,
                 with_attributes: bool = False, backoff: Schedule | None = None) -> None:
        super().__init__()
        self.backoff = backoff or Schedule.exponential(DEFER_BASE_S, DEFER_CAP_S)
        self.name = f"{worker}:{queue_name}"
        self.sqs = sqs
        self.queue = queue_name
        self.queue_url = queue_url
        self.visibility_s = visibility_s
        self.receiver = Receiver(sqs, queue_url, worker=worker, max_in_flight=max_in_flight,
                                 wait_s=wait_s, visibility_s=visibility_s,
                                 with_attributes=with_attributes)
        self.deleter = Deleter(sqs, queue_url)
        self._inflight: set[asyncio.Task[None]] = set()

    @property
    def healthy(self) -> bool:
        return self.receiver.healthy

    async def run(self) -> None:
        """Poll until shutdown; then finish what was dispatched."""
        self._begin()
        while not self._stop.is_set():
            await self.poll_once()
        await self.drain()

    async def run_once(self) -> int:
        return await self.poll_once()

    async def poll_once(self) -> int:
        """One receive, its messages dispatched (or handed back when stopping)."""
        messages = await self.receiver.receive(self._stop)
        if messages and self._stop.is_set():
            await self.receiver.set_visibility(messages, 0)
            return 0
        if messages:
            await self.dispatch(messages)
        return len(messages)

    async def drain(self) -> None:
        """Wait for every dispatched task (one-iteration tests call this too)."""
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def defer(self, message: MessageTypeDef) -> int:
        """Hide a message we could not handle now for a delay growing with its receive
        count (``backoff``), so an outage costs a few receives per message instead of one
        per visibility timeout and the queue's redrive limit is reached by nothing valid.
        Needs ``with_attributes`` (``ApproximateReceiveCount``); returns the delay."""
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        delay = max(1, round(self.backoff.delay(receives)))
        await self.receiver.delay(message, delay)
        return delay

    async def dead_letter(self, message: MessageTypeDef, *, dlq_url: str, reason: str,
                          detail: str) -> None:
        """Copy ``message`` to ``dlq_url`` with ``remitflow.reason``/``detail``/``source_queue``
        (the caller acknowledges it afterwards)."""
        attrs: dict[str, Any] = {
            "remitflow.reason": {"DataType": "String", "StringValue": reason},
            "remitflow.detail": {"DataType": "String", "StringValue": detail[:1024] or "-"},
            "remitflow.source_queue": {"DataType": "String", "StringValue": self.queue}}
        await self.sqs.send_message(QueueUrl=dlq_url, MessageBody=message.get("Body") or "-",
                                    MessageAttributes=attrs)

    def spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def dispatch(self, messages: list[MessageTypeDef]) -> None:
        """Start handling ``messages`` (acquiring one receiver slot each)."""
        raise NotImplementedError


class NotAnEvent(ValueError):
    """A message on an event queue that its consumer cannot read as an event."""


class EventQueueWorker(SqsWorker):
    """An event queue's consumer: each message handled on its own (``handle(body)``).

    A body that is not an event (:class:`NotAnEvent`) goes to ``dlq_url`` with
    ``remitflow.reason=invalid_event`` and the detail, then is acknowledged; any other
    failure (DynamoDB down, say) hides the message again for a delay growing with its
    receive count (:meth:`SqsWorker.defer`, like the intakes), so a long outage delays
    events and dead-letters none; a handled one is acknowledged. Subclasses implement
    :meth:`handle` and count invalid ones in :meth:`invalid`.
    """

    def __init__(self, sqs: SQSClient, queue_name: str, queue_url: str, *, dlq_url: str,
                 worker: str, max_in_flight: int = 10, wait_s: int = 10,
                 visibility_s: int = 60, backoff: Schedule | None = None) -> None:
        super().__init__(sqs, queue_name, queue_url, worker=worker,
                         max_in_flight=max_in_flight, wait_s=wait_s, visibility_s=visibility_s,
                         with_attributes=True, backoff=backoff)
        self.worker, self.dlq_url = worker, dlq_url

    async def dispatch(self, messages: list[MessageTypeDef]) -> None:
        for message in messages:
            await self.receiver.slots.acquire()
            self.spawn(self._one(message))

    async def handle(self, body: str) -> str:
        """Apply one event; returns its outcome (for metrics and logs)."""
        raise NotImplementedError

    def invalid(self, detail: str) -> None:
        """Count a message that was not an event (it is in the DLQ now)."""

    async def _one(self, message: MessageTypeDef) -> None:
        failure: Exception | None = None
        try:
            try:
                await self.handle(message.get("Body") or "")
            except NotAnEvent as exc:
                await self._dead_letter(message, str(exc))
        except Exception as exc:
            failure = exc
        finally:
            self.receiver.slots.release()
        if failure is None:
            await self.deleter.delete(message)
            return
        WORKER_ERRORS.labels(worker=self.worker).inc()
        delay = await self.defer(message)    # not acknowledged: back after ``delay``
        log.warning(f"{self.worker}.deferred", error=repr(failure)[:300], delay_s=delay,
                    message_id=message.get("MessageId"))

    async def _dead_letter(self, message: MessageTypeDef, detail: str) -> None:
        await self.dead_letter(message, dlq_url=self.dlq_url, reason="invalid_event",
                               detail=detail)
        self.invalid(detail)
        log.warning(f"{self.worker}.invalid", detail=detail[:300],
                    message_id=message.get("MessageId"))
