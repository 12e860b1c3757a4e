"""Back-pressure: start a workflow only while its task queue can take the task at once.

A ``.waitForTaskToken`` task's heartbeat clock starts when Step Functions sends the
task message, not when a worker receives it. Started faster than the task workers
answer, messages pile up in the task queue and the oldest time out there
(``States.HeartbeatTimeout``), become retries and add load. :class:`TaskQueueGate`
bounds that pile: a start is admitted only while the queue's visible backlog
(``ApproximateNumberOfMessages``, the tasks nobody received yet) plus the starts
this process admitted since it last looked, or within the last ``settle_s`` (an
execution sends its task message a moment after it starts, so a fresh reading may
not show it yet), is under ``limit``. Counting a start twice only makes the gate
more careful. Tasks a worker already holds are not counted: they are heartbeating.

Where it waits and why nothing is lost (``docs/capacity.md``, "Holding a surge"):

* The stream starter waits in :meth:`TaskQueueGate.admit` *inside* the stream
  processor, so the shard is not checkpointed past a record whose job was not
  started: a crash or a lease hand-over replays it. The jobs wait ``RECEIVED``
  in the job table (visible in the API and console), the stream records in the
  stream; the shard's lag gauge shows the wait.
* The sweeper (due retries, ``RECEIVED`` jobs overdue in ``running-index``) asks
  :meth:`TaskQueueGate.try_admit` and, when the gate is closed, leaves the job
  for its next sweep: still due, still in its index.
* An attempt is still started at most once: admission only delays
  :meth:`~shared.pipeline.starter.WorkflowStarter.begin`, which remains the
  version-conditioned write plus the deterministic execution name.

The depth is read only while starts are being admitted: when the estimate
reaches three quarters of the limit or the reading is ``max_age_s`` old, and no
more than every ``min_age_s`` (so at most two requests a second while the gate is
closed, none while idle). Several replicas each add their own admissions to the
shared depth, so the backlog can overshoot by ``limit / 4`` per replica; the limit
bounds waiting time, it is not an exact count.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

from shared.logs import get_logger
from shared.metrics import ADMISSION_READS, ADMISSION_WAITS, QUEUE_MESSAGES
from shared.retry import sleep_or_stop

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = get_logger(__name__)


class Deferred(Exception):
    """The gate did not admit the start before the waiter was told to stop."""


class TaskQueueGate:
    """Admits workflow starts while the task queue's unreceived backlog is under ``limit``."""

    def __init__(self, sqs: SQSClient, queue_url: str, *, queue: str, limit: int,
                 poll_s: float = 0.5, max_age_s: float = 5.0, min_age_s: float = 0.5,
                 settle_s: float = 2.0, stop: asyncio.Event | None = None) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue = queue
        self.limit = limit
        self.poll_s = poll_s
        self.max_age_s = max_age_s
        self.min_age_s = min_age_s
        self.settle_s = settle_s
        self.stop = stop
        self.depth = 0              # the last reading
        self._admitted: deque[float] = deque()   # when recent starts were admitted
        self.read_at = -float("inf")
        self.reads = 0
        self._lock = asyncio.Lock()

    @property
    def estimate(self) -> int:
        """Unreceived tasks, as far as this process knows (never less than the truth
        for its own starts)."""
        horizon = min(self.read_at, time.monotonic() - self.settle_s)
        while self._admitted and self._admitted[0] < horizon:
            self._admitted.popleft()
        return self.depth + len(self._admitted)

    def _admit(self) -> bool:
        self._admitted.append(time.monotonic())
        return True

    async def _refresh(self) -> None:
        attrs = await self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"])
        self.depth = int(attrs.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))
        self.read_at = time.monotonic()
        self.reads += 1
        ADMISSION_READS.labels(queue=self.queue).inc()
        QUEUE_MESSAGES.labels(queue=self.queue).set(self.depth)

    async def try_admit(self) -> bool:
        """Admit one start if there is room now (reads the depth when due); never waits.

        A failed depth read admits: back-pressure is an optimisation of waiting time,
        and refusing every start while SQS misbehaves would stop the pipeline.
        """
        async with self._lock:
            age = time.monotonic() - self.read_at
            stale = age >= self.max_age_s or self.estimate * 4 >= self.limit * 3
            if stale and age >= self.min_age_s:
                try:
                    await self._refresh()
                except Exception as exc:
                    log.warning("admission.depth_failed", queue=self.queue, error=repr(exc))
                    return self._admit()
            if self.estimate < self.limit:
                return self._admit()
            return False

    async def admit(self) -> None:
        """Wait until one start is admitted.

        Raises:
            Deferred: ``stop`` was set first (the caller leaves its record unprocessed).
        """
        if await self.try_admit():
            return
        ADMISSION_WAITS.labels(queue=self.queue).inc()
        log.debug("admission.waiting", queue=self.queue, depth=self.depth, limit=self.limit)
        stop = self.stop or asyncio.Event()
        while True:
            if await sleep_or_stop(stop, self.poll_s):
                raise Deferred(self.queue)
            if await self.try_admit():
                return
