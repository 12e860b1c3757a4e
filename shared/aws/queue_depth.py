"""Queue depth reported by the service that owns the queues (its dead-letter queues).

The sweeper reports every queue's depth too, but only while it runs and leads; a
service exporting its own DLQs keeps ``RemitflowDLQNotEmpty`` alive when the sweeper
is down, and puts the number on the dashboard row of the service that has to act.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.aws.clients import QueueUrls
from shared.logs import get_logger
from shared.metrics import QUEUE_MESSAGES
from shared.worker import Lifecycle, ticker

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = get_logger(__name__)


class QueueDepths(Lifecycle):
    """Every ``interval_s``, ``GetQueueAttributes`` on ``queues`` into ``remitflow_queue_messages``.

    A failed read is logged and retried next tick (the gauge keeps its last value).
    """

    name = "queue_depths"
    healthy = True

    def __init__(self, sqs: SQSClient, queues: Sequence[str], interval_s: float) -> None:
        super().__init__()
        self.queues, self.interval_s = tuple(queues), interval_s
        self._urls = QueueUrls(sqs)
        self._sqs = sqs

    async def run(self) -> None:
        self._begin()
        async for _ in ticker(self.interval_s, self._stop):
            await self.measure_once()

    async def run_once(self) -> dict[str, int]:
        return await self.measure_once()

    async def measure_once(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for queue in self.queues:
            try:
                attrs = await self._sqs.get_queue_attributes(
                    QueueUrl=await self._urls.url(queue),
                    AttributeNames=["ApproximateNumberOfMessages"])
            except Exception as exc:
                log.warning("queue_depth.failed", queue=queue, error=repr(exc))
                continue
            out[queue] = int(attrs.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))
            QUEUE_MESSAGES.labels(queue=queue).set(out[queue])
        return out
