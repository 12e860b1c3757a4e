"""The hand-off check: nothing falls between a publishing kind's table and its subscribers'.

A publishing kind's task worker publishes before it answers, and its subscribers'
intakes create their job from the message (``docs/architecture.md``, "Hand-off
check"). If that message never becomes a job (a subscription or queue policy
broken for a while, a queue purged, a message dead-lettered by mistake), the job
upstream is finished and nobody downstream knows. So every succeeded job of a
publishing kind enters the keys-only ``handoff-index`` (``handoff_job`` shard,
``handoff_at`` time) with the success write itself, and the sweeper's leader
walks that index by time window: the jobs that succeeded between the last
checked time and *now - grace* are looked up in every subscribing table
(``BatchGetItem``, keys only); one that is missing is published again, counted
in ``remitflow_handoff_repairs_total`` and logged (``handoff.repaired``).

Guarantees:

* Each succeeded job is checked once its grace has passed: the window's end is
  written to ``handoff:<table>`` in the leases table only after every job in it
  was checked, so a crash or a lost lease repeats a window, never skips one.
* A republish is safe: the subscribers' intakes are idempotent by ``request_id``
  (one job per id), so a message that was only late makes no second job.
* A repaired job is checked again: its ``handoff_at`` moves to the repair time, so
  the next windows look at it after another grace period, up to ``max_repairs``
  times; then it is left, counted as ``gave_up`` and logged at error level (look
  in the subscriber's dead-letter queue: its intake refused the message).
* The cost is the hand-off itself: one keys-only index write per succeeded job,
  and per check a ``Query`` per shard plus one ``BatchGetItem`` per 100 jobs per
  subscribing table. Nothing is written for a job that arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.aws.clients import error_code, string_attributes
from shared.aws.names import lease_item_key
from shared.logs import get_logger
from shared.metrics import HANDOFF_CHECKED, HANDOFF_CHECKED_UNTIL, HANDOFF_REPAIRS
from shared.pipeline.indexes import BATCH_GET_MAX, batch_get
from shared.pipeline.jobs import HANDOFF_AT, HANDOFF_INDEX, HANDOFF_SHARD, Status, iso_at

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sns import SNSClient

log = get_logger(__name__)
BEGINNING = "1970-01-01T00:00:00.000Z"   # before the first check (key values cannot be "")


@dataclass
class HandoffReport:
    """One check of one table: the window, what it read and what it repaired."""

    table: str
    window_start: str
    window_end: str
    checked: int = 0
    repaired: int = 0
    gave_up: int = 0
    skipped: int = 0
    aborted: str | None = None
    repaired_ids: list[str] = field(default_factory=list)


class HandoffCheck:
    """Checks one publishing table against its subscribing tables (see module doc).

    Args:
        table: the publishing kind's job table (with ``handoff-index``).
        subscribers: the job tables of the kinds subscribed to its topic.
        topic_arn: where the message is published again.
        message_field: the job attribute holding the published message.
        attributes: the message attributes for a message (as first published).
        success: the status a published job ends in.
        leases_table: where the checked-until time is kept (``handoff:<table>``).
        grace_s: how long after success a subscriber's job may still be on its way.
        max_repairs: republishes per job before it is given up on.
    """

    def __init__(self, *, dynamodb: DynamoDBClient, sns: SNSClient, table: str,
                 subscribers: Sequence[str], topic_arn: str, message_field: str,
                 attributes: Callable[[str], Mapping[str, str]], success: Status,
                 leases_table: str, shards: int, grace_s: float, max_repairs: int = 3,
                 page_size: int = 500) -> None:
        self.dynamodb = dynamodb
        self.sns = sns
        self.table = table
        self.subscribers = tuple(subscribers)
        self.topic_arn = topic_arn
        self.message_field = message_field
        self.attributes = attributes
        self.success = success
        self.leases_table = leases_table
        self.shards = shards
        self.grace_s = grace_s
        self.max_repairs = max_repairs
        self.page_size = page_size
        self.cursor_key = f"handoff:{table}"

    # --- the checked-until time -----------------------------------------------------------

    async def checked_until(self) -> str:
        """The end of the last completed window (:data:`BEGINNING` before the first)."""
        resp = await self.dynamodb.get_item(
            TableName=self.leases_table, Key=lease_item_key("handoff", self.cursor_key),
            ConsistentRead=True)
        return str(resp.get("Item", {}).get("checked_until", {}).get("S", BEGINNING))

    async def _advance(self, end: str, end_unix: float) -> None:
        # Never backwards: a slower check that lost the lease must not undo a newer one.
        try:
            await self.dynamodb.update_item(
                TableName=self.leases_table, Key=lease_item_key("handoff", self.cursor_key),
                UpdateExpression="SET checked_until = :end",
                ConditionExpression="attribute_not_exists(checked_until) OR checked_until < :end",
                ExpressionAttributeValues={":end": {"S": end}})
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        HANDOFF_CHECKED_UNTIL.labels(table=self.table).set(end_unix)

    # --- one check ------------------------------------------------------------------------

    async def check(self, *, now: float | None = None,
                    still_leader: Callable[[], Awaitable[bool]] | None = None
                    ) -> HandoffReport:
        """Check every job that succeeded after the last window and before now - grace."""
        end_unix = (time.time() if now is None else now) - self.grace_s
        start, end = await self.checked_until(), iso_at(end_unix)
        report = HandoffReport(table=self.table, window_start=start, window_end=end)
        if end <= start:
            return report
        for shard in range(self.shards):
            last_key: dict[str, Any] | None = None
            while True:
                ids, last_key = await self._page(f"s{shard}", start, end, last_key)
                await self._check_ids(ids, report)
                if last_key is None:
                    break
                if still_leader is not None and not await still_leader():
                    report.aborted = "lease lost"
                    return report
        await self._advance(end, end_unix)
        if report.repaired or report.gave_up:
            log.info("handoff.checked", table=self.table, window_start=start, window_end=end,
                     checked=report.checked, repaired=report.repaired, gave_up=report.gave_up)
        return report

    async def _page(self, shard: str, start: str, end: str, last_key: dict[str, Any] | None
                    ) -> tuple[list[str], dict[str, Any] | None]:
        """One page of the index in ``(start, end]`` (the key condition is inclusive)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table, "IndexName": HANDOFF_INDEX,
            "KeyConditionExpression": "#pk = :pk AND #at BETWEEN :start AND :end",
            "ExpressionAttributeNames": {"#pk": HANDOFF_SHARD, "#at": HANDOFF_AT},
            "ExpressionAttributeValues": {":pk": {"S": shard}, ":start": {"S": start},
                                          ":end": {"S": end}},
            "Limit": self.page_size}
        if last_key:
            kwargs["ExclusiveStartKey"] = last_key
        resp = await self.dynamodb.query(**kwargs)
        ids = [item["request_id"]["S"] for item in resp.get("Items", [])
               if item.get(HANDOFF_AT, {}).get("S", "") > start]
        return ids, resp.get("LastEvaluatedKey")

    async def _check_ids(self, ids: list[str], report: HandoffReport) -> None:
        for i in range(0, len(ids), BATCH_GET_MAX):
            chunk = ids[i:i + BATCH_GET_MAX]
            # keys only, eventually consistent: a job downstream is ≥ the grace period old
            present = await asyncio.gather(*(
                batch_get(self.dynamodb, t, chunk, consistent=False, projection="request_id")
                for t in self.subscribers))
            report.checked += len(chunk)
            HANDOFF_CHECKED.labels(table=self.table).inc(len(chunk))
            for request_id in chunk:
                missing = [t for t, found in zip(self.subscribers, present, strict=True)
                           if request_id not in found]
                if missing:
                    await self._repair(request_id, missing, report)

    async def _repair(self, request_id: str, missing: list[str],
                      report: HandoffReport) -> None:
        resp = await self.dynamodb.get_item(
            TableName=self.table, Key={"request_id": {"S": request_id}}, ConsistentRead=True)
        item = resp.get("Item", {})
        message = item.get(self.message_field, {}).get("S")
        seen = item.get(HANDOFF_AT, {}).get("S")
        if item.get("status", {}).get("S") != self.success.value or not message or not seen:
            report.skipped += 1   # no longer a succeeded job with its message: not ours to send
            return
        repairs = int(item.get("handoff_repairs", {}).get("N", "0"))
        if repairs >= self.max_repairs:
            report.gave_up += 1
            HANDOFF_REPAIRS.labels(table=self.table, outcome="gave_up").inc()
            log.error("handoff.gave_up", request_id=request_id, table=self.table,
                      missing_in=missing, repairs=repairs,
                      hint="the subscriber refused it: read its intake's dead-letter queue")
            return
        await self.sns.publish(TopicArn=self.topic_arn, Message=message,
                               MessageAttributes=string_attributes(self.attributes(message)))
        # Check it again after another grace period (unless another check got here first).
        try:
            await self.dynamodb.update_item(
                TableName=self.table, Key={"request_id": {"S": request_id}},
                UpdateExpression="SET #at = :now, handoff_repairs = :n",
                ConditionExpression="#at = :seen",
                ExpressionAttributeNames={"#at": HANDOFF_AT},
                ExpressionAttributeValues={":now": {"S": iso_at(time.time())},
                                           ":n": {"N": str(repairs + 1)},
                                           ":seen": {"S": seen}})
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        report.repaired += 1
        report.repaired_ids.append(request_id)
        HANDOFF_REPAIRS.labels(table=self.table, outcome="republished").inc()
        log.warning("handoff.repaired", request_id=request_id, table=self.table,
                    missing_in=missing, repair=repairs + 1)
