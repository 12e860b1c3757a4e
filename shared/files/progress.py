"""Per-file progress in the leases table: where a crashed file intake resumes.

One item per file version, key ``file:<bucket>/<key>#<etag>``::

    next_index   first record not yet known to be handled (the resume point)
    state        reading | done | quarantined
    reason       why it was quarantined (absent otherwise)
    updated_at   wall-clock time of the last write (for humans)

Guarantees: ``next_index`` never moves backwards (every save is conditioned on
the stored value being lower), so a slow, superseded reader cannot rewind a
faster one; a ``done`` or ``quarantined`` file is never read again for the same
ETag, so a redelivered or duplicated S3 event costs one ``GetItem``. The records
between the last save and a crash are handled again on resume: the consumer's
writes must be idempotent (the intake's conditional puts are).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from shared.aws.clients import error_code
from shared.files.drop import ObjectRef
from shared.pipeline.jobs import now_iso

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

FileState = Literal["new", "reading", "done", "quarantined"]


@dataclass(frozen=True)
class Progress:
    state: FileState
    next_index: int = 0
    reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "quarantined")


class FileProgress:
    """Progress items of one consumer in the leases table."""

    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self.ddb = ddb
        self.table = table

    @staticmethod
    def key(ref: ObjectRef) -> str:
        return f"file:{ref.bucket}/{ref.key}#{ref.etag}"

    async def get(self, ref: ObjectRef) -> Progress:
        item = (await self.ddb.get_item(TableName=self.table, ConsistentRead=True,
                                        Key={"lease_key": {"S": self.key(ref)}})).get("Item")
        if not item:
            return Progress("new")
        state: FileState = item["state"]["S"]  # type: ignore[assignment]
        return Progress(state, int(item.get("next_index", {}).get("N", "0")),
                        item.get("reason", {}).get("S"))

    async def save(self, ref: ObjectRef, next_index: int) -> bool:
        """Move the resume point forward; False when it already was at or past it."""
        return await self._write(ref, next_index, "reading", None)

    async def finish(self, ref: ObjectRef, next_index: int,
                     state: Literal["done", "quarantined"], reason: str | None = None) -> None:
        await self._write(ref, next_index, state, reason, force=True)

    async def _write(self, ref: ObjectRef, next_index: int, state: FileState,
                     reason: str | None, *, force: bool = False) -> bool:
        names = {"#n": "next_index", "#s": "state", "#u": "updated_at"}
        values = {":n": {"N": str(next_index)}, ":s": {"S": state}, ":u": {"S": now_iso()}}
        update = "SET #n = :n, #s = :s, #u = :u"
        if reason:
            names["#r"] = "reason"
            values[":r"] = {"S": reason[:200]}
            update += ", #r = :r"
        kwargs = {} if force else {
            "ConditionExpression": "attribute_not_exists(#n) OR #n < :n"}
        try:
            await self.ddb.update_item(
                TableName=self.table, Key={"lease_key": {"S": self.key(ref)}},
                UpdateExpression=update, ExpressionAttributeNames=names,
                ExpressionAttributeValues=values, **kwargs)  # type: ignore[arg-type]
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True
