"""How long a job lives: its expiry attribute and the tombstone that outlives it.

``docs/architecture.md``, "Data lifecycle". A job that reaches a final state
(its kind's success, ``REJECTED``) gets ``expires_at`` (epoch seconds), which
DynamoDB's TTL deletes it by; a job that leaves a final state (a hand re-drive)
loses it, so an unfinished job never expires. Before a job can expire, the archiver
(``shared/operations/archive.py``) writes its **tombstone**: keys only (request id,
payload hash, final state, dates, where its archive is; no personal data), kept
for ``REMITFLOW_IDEMPOTENCY_DAYS`` after the job's own expiry, so intake
(:func:`shared.pipeline.intake.store_parsed`) still tells a re-sent message from a
conflicting one after the job is gone.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from shared.aws.dynamo import from_item, to_item

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

EXPIRES_AT = "expires_at"
"""Job and tombstone attribute DynamoDB's TTL expires items by (epoch seconds, N)."""
TOMBSTONES = "tombstones"
"""Short name of the tombstone table (``<prefix>-tombstones``, PK ``tombstone_key``)."""
TOMBSTONE_KEY = "tombstone_key"
DEFAULT_RETENTION_S = 90 * 86400.0
FINAL_STATES = frozenset({"COMPLETED", "SENT", "REJECTED"})
# What a tombstone keeps of a job: keys, the content hash, the outcome and dates.
TOMBSTONE_FIELDS = ("request_id", "payload_sha256", "status", "attempt", "created_at",
                    "updated_at", EXPIRES_AT)


def expiry(retention_s: float, now: float | None = None) -> int:
    """The ``expires_at`` of a job finishing ``now`` and kept ``retention_s``."""
    return math.ceil((time.time() if now is None else now) + retention_s)


def finished(raw: dict[str, Any]) -> bool:
    """A job in a final state that carries its expiry (what TTL will delete)."""
    return raw.get("status") in FINAL_STATES and raw.get(EXPIRES_AT) is not None


class Tombstones:
    """The tombstone table: one keys-only item per finished job, ``<table>/<request_id>``."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self.dynamodb = dynamodb
        self.table = table

    @staticmethod
    def key(job_table: str, request_id: str) -> str:
        return f"{job_table}/{request_id}"

    async def get(self, job_table: str, request_id: str) -> dict[str, Any] | None:
        resp = await self.dynamodb.get_item(
            TableName=self.table, Key={TOMBSTONE_KEY: {"S": self.key(job_table, request_id)}})
        item = resp.get("Item")
        return from_item(item) if item else None

    async def put(self, job_table: str, job: dict[str, Any], *, keep_s: float,
                  archive_key: str) -> dict[str, Any]:
        """Write (or rewrite, idempotently) the tombstone of the finished ``job``.

        It expires ``keep_s`` after the job does; a re-driven job that finishes again
        rewrites it with its new outcome.
        """
        stone = {k: job[k] for k in TOMBSTONE_FIELDS if job.get(k) is not None}
        stone.update({TOMBSTONE_KEY: self.key(job_table, str(job["request_id"])),
                      "job_table": job_table, "archive_key": archive_key,
                      "job_expires_at": int(job[EXPIRES_AT]),
                      EXPIRES_AT: int(job[EXPIRES_AT]) + math.ceil(keep_s)})
        await self.dynamodb.put_item(TableName=self.table, Item=to_item(stone))
        return stone
