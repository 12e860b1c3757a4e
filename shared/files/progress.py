"""Per-file progress and outcome: where a crashed file intake resumes, and what
became of each file (the "file's record" operators and ``remitflow send --wait`` read).

The records live in their own table, ``<prefix>-files`` (:data:`FILE_RECORDS`), not
in the leases table: a lease round scans the leases table, and file records grow
with every file (docs/bankfiles.md). A finished record expires after
``retention_days`` (DynamoDB TTL on ``expires_at``); a duplicate event for an
expired file version reads the file again and creates nothing new.

One item per file version, key ``file:<bucket>/<key>#<etag>``::

    next_index   first record not yet known to be handled (the resume point)
    state        reading | done | quarantined
    reason       why it was quarantined (absent otherwise)
    object_key   bucket key of the file (``bucket``, ``etag`` likewise), for listings
    summary      JSON of :class:`FileSummary`: counts by outcome, rejection reasons,
                 reports, what the file was read as (absent until the first save)
    updated_at   wall-clock time of the last write (for humans)
    expires_at   epoch seconds DynamoDB deletes a finished record at (TTL)

Guarantees: ``next_index`` never moves backwards (every save is conditioned on
the stored value being lower), so a slow, superseded reader cannot rewind a
faster one; a ``done`` or ``quarantined`` file is never read again for the same
ETag, so a redelivered or duplicated S3 event costs one ``GetItem``, unless an
operator asks for it (:meth:`FileProgress.reopen`). The records between the last
save and a crash are handled again on resume: the consumer's writes must be
idempotent (the intake's conditional puts are), and the summary's counts may
then count a replayed record twice (as a duplicate).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from shared.aws.clients import error_code
from shared.aws.names import Names
from shared.files.drop import ObjectRef
from shared.pipeline.jobs import now_iso
from shared.pipeline.kind import TableSpec

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

FileState = Literal["new", "reading", "done", "quarantined"]
#: At most this many notes (rejected records, reports) are kept on the record.
MAX_NOTES = 50
KEY_PREFIX = "file:"
#: The file records' table: ``<prefix>-files``, key ``file_key``, TTL ``expires_at``.
FILE_RECORDS = TableSpec("files", "file_key", ttl="expires_at")
#: How long a finished file's record is kept (the console lists it meanwhile).
RETENTION_DAYS = 90


@dataclass
class FileSummary:
    """What a file produced so far (JSON on the record).

    Attributes:
        counts: records by outcome (``stored``, ``duplicate``, ``rejected``…).
        reasons: rejected records by reason.
        notes: the first :data:`MAX_NOTES` rejected records and reports, each a
            dict (``index``, ``reason``/``level``, ``detail``…).
        info: how the file was read (``message_type``, ``schema``, ``variant``,
            ``partner``), and for a quarantined file ``detail``.
    """

    counts: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)

    def count(self, outcome: str, n: int = 1) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + n

    def note(self, entry: dict[str, Any]) -> None:
        reason = entry.get("reason")
        if reason:
            self.reasons[str(reason)] = self.reasons.get(str(reason), 0) + 1
        if len(self.notes) < MAX_NOTES:
            self.notes.append(entry)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> FileSummary:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(counts=dict(data.get("counts", {})), reasons=dict(data.get("reasons", {})),
                   notes=list(data.get("notes", [])), info=dict(data.get("info", {})))


@dataclass(frozen=True)
class Progress:
    state: FileState
    next_index: int = 0
    reason: str | None = None
    summary: FileSummary = field(default_factory=FileSummary)
    bucket: str | None = None
    key: str | None = None
    etag: str | None = None
    updated_at: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "quarantined")

    @property
    def ref(self) -> ObjectRef | None:
        """The file version this record is about (None for a record without it)."""
        if not (self.bucket and self.key):
            return None
        return ObjectRef(self.bucket, self.key, "" if self.etag == "-" else self.etag or "", 0)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Progress:
        state: FileState = item["state"]["S"]
        return cls(state, int(item.get("next_index", {}).get("N", "0")),
                   item.get("reason", {}).get("S"),
                   FileSummary.from_json(item.get("summary", {}).get("S")),
                   item.get("bucket", {}).get("S"), item.get("object_key", {}).get("S"),
                   item.get("etag", {}).get("S"), item.get("updated_at", {}).get("S"))


class FileProgress:
    """Progress items of one consumer (see the module docstring for the item)."""

    @classmethod
    def for_prefix(cls, ddb: DynamoDBClient, prefix: str) -> FileProgress:
        """The records of every file drop of a deployment (``<prefix>-files``)."""
        return cls(ddb, Names(prefix).name(FILE_RECORDS.short))

    def __init__(self, ddb: DynamoDBClient, table: str, key_name: str = FILE_RECORDS.key,
                 retention_days: float = RETENTION_DAYS) -> None:
        self.ddb = ddb
        self.table = table
        self.key_name = key_name
        self.retention_s = retention_days * 86400

    @staticmethod
    def key(ref: ObjectRef) -> str:
        return f"{KEY_PREFIX}{ref.bucket}/{ref.key}#{ref.etag}"

    def _key(self, ref: ObjectRef) -> dict[str, Any]:
        return {self.key_name: {"S": self.key(ref)}}

    async def get(self, ref: ObjectRef) -> Progress:
        item = (await self.ddb.get_item(TableName=self.table, ConsistentRead=True,
                                        Key=self._key(ref))).get("Item")
        return Progress.from_item(item) if item else Progress("new")

    async def save(self, ref: ObjectRef, next_index: int,
                   summary: FileSummary | None = None) -> bool:
        """Move the resume point forward; False when it already was at or past it."""
        return await self._write(ref, next_index, "reading", None, summary)

    async def finish(self, ref: ObjectRef, next_index: int,
                     state: Literal["done", "quarantined"], reason: str | None = None,
                     summary: FileSummary | None = None) -> None:
        await self._write(ref, next_index, state, reason, summary, force=True)

    async def get_by_key(self, record_key: str) -> Progress | None:
        """A record by its key (``file:<bucket>/<key>#<etag>``), None when absent."""
        item = (await self.ddb.get_item(TableName=self.table, ConsistentRead=True,
                                        Key={self.key_name: {"S": record_key}})).get("Item")
        return Progress.from_item(item) if item else None

    async def recent(self, limit: int = 200) -> list[tuple[str, Progress]]:
        """Up to ``limit`` records, newest first, with their keys (an operator's
        listing: a Scan of the records' own table, bounded by the TTL)."""
        out: list[tuple[str, Progress]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table, "FilterExpression": "begins_with(#k, :p)",
            "ExpressionAttributeNames": {"#k": self.key_name},
            "ExpressionAttributeValues": {":p": {"S": KEY_PREFIX}}}
        while True:
            resp = await self.ddb.scan(**kwargs)
            out += [(i[self.key_name]["S"], Progress.from_item(i)) for i in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        out.sort(key=lambda kp: kp[1].updated_at or "", reverse=True)
        return out[:limit]

    async def reopen(self, ref: ObjectRef, previous: FileSummary | None = None) -> bool:
        """Let a quarantined file version be read again from the start (an operator's
        retry once the cause is fixed); False when it is not quarantined (so a second
        retry does nothing). The record keeps where the file came from (``info``
        without the old ``detail``); the records it then writes go through the same
        idempotent rule as before."""
        info = {k: v for k, v in (previous.info if previous else {}).items() if k != "detail"}
        info["retried_at"] = now_iso()
        try:
            await self.ddb.update_item(
                TableName=self.table, Key=self._key(ref),
                UpdateExpression="SET #s = :r, #n = :z, #u = :u, #summary = :m "
                                 "REMOVE #reason, #x",
                ConditionExpression="#s = :q",
                ExpressionAttributeNames={"#s": "state", "#n": "next_index", "#u": "updated_at",
                                          "#reason": "reason", "#summary": "summary",
                                          "#x": "expires_at"},
                ExpressionAttributeValues={":r": {"S": "reading"}, ":z": {"N": "0"},
                                           ":u": {"S": now_iso()}, ":q": {"S": "quarantined"},
                                           ":m": {"S": FileSummary(info=info).to_json()}})
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def _write(self, ref: ObjectRef, next_index: int, state: FileState,
                     reason: str | None, summary: FileSummary | None, *,
                     force: bool = False) -> bool:
        names = {"#n": "next_index", "#s": "state", "#u": "updated_at", "#b": "bucket",
                 "#k": "object_key", "#e": "etag"}
        values = {":n": {"N": str(next_index)}, ":s": {"S": state}, ":u": {"S": now_iso()},
                  ":b": {"S": ref.bucket}, ":k": {"S": ref.key}, ":e": {"S": ref.etag or "-"}}
        update = "SET #n = :n, #s = :s, #u = :u, #b = :b, #k = :k, #e = :e"
        if reason:
            names["#r"] = "reason"
            values[":r"] = {"S": reason[:200]}
            update += ", #r = :r"
        if summary is not None:
            names["#m"] = "summary"
            values[":m"] = {"S": summary.to_json()}
            update += ", #m = :m"
        if state in ("done", "quarantined"):
            names["#x"] = "expires_at"
            values[":x"] = {"N": str(int(time.time() + self.retention_s))}
            update += ", #x = :x"
        kwargs = {} if force else {
            "ConditionExpression": "attribute_not_exists(#n) OR #n < :n"}
        try:
            await self.ddb.update_item(
                TableName=self.table, Key=self._key(ref),
                UpdateExpression=update, ExpressionAttributeNames=names,
                ExpressionAttributeValues=values, **kwargs)  # type: ignore[arg-type]
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True
