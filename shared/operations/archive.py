"""The archive: expired jobs, as the financial record, in S3; and the archiver that fills it.

``docs/architecture.md``, "Data lifecycle". The sweeper runs one :class:`Archiver` per
job table, on a stream consumer of its own (its own shard leases, beside the
service's starter: DynamoDB Streams allows two readers per shard). For each record:

* a job that became final (its kind's success, ``REJECTED``, with ``expires_at``):
  its keys-only tombstone is written (:class:`~shared.pipeline.lifecycle.Tombstones`),
  long before TTL can delete the job, so intake never sees a gap;
* a ``REMOVE`` made by DynamoDB's TTL process (:attr:`~shared.stream.source.Record.expired`):
  the old image (the job with its advice, delivery and history) is written to
  ``s3://<archive bucket>/<table>/dt=<finished date>/<request_id>.jsonl.gz``, one
  JSON line, gzip with a fixed header, and its tombstone (again: idempotent);
* any other ``REMOVE`` (a caller's ``DeleteItem``) is not an expiry: counted, logged,
  not archived.

Exactly once: the object's key and bytes are pure functions of the record, and an
object already there is not written again, so a batch replayed after a crash (the
checkpoint trails the work) writes nothing new. Lookups (:meth:`Archive.find`) go
through the tombstone while it lives, else through the date partitions.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from shared.aws.clients import error_code
from shared.aws.dynamo import from_item
from shared.logs import get_logger
from shared.metrics import ARCHIVED
from shared.operations.sealing import SubjectKeys, seal, unseal
from shared.pipeline.faults import fault_point
from shared.pipeline.lifecycle import EXPIRES_AT, Tombstones, finished
from shared.stream.source import Record

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = get_logger(__name__)
SUFFIX = ".jsonl.gz"
ARCHIVE_LEASES = "#archive"
"""Suffix of the archiver's shard-lease namespace (``<table>#archive``): its own
leases and checkpoints, apart from the starter's on the same stream."""
JSON_FIELDS = ("advice", "delivery", "payload")   # JSON text on the item, objects in the archive


def plain(value: Any) -> Any:
    """A DynamoDB-decoded value as JSON: numbers as integers or decimal strings."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def archive_key(short: str, job: dict[str, Any]) -> str:
    """``<table>/dt=<YYYY-MM-DD the job finished>/<request_id>.jsonl.gz``."""
    day = str(job.get("updated_at") or job.get("created_at") or "")[:10] or "undated"
    return f"{short}/dt={day}/{job['request_id']}{SUFFIX}"


def readable(job: dict[str, Any]) -> dict[str, Any]:
    """A job's attributes as JSON, its JSON text fields as objects."""
    out: dict[str, Any] = plain(job)
    for name in JSON_FIELDS:
        if isinstance(out.get(name), str):
            with contextlib.suppress(ValueError):
                out[name] = json.loads(out[name])
    return out


@dataclass(frozen=True)
class Sealing:
    """How the archive seals personal data (``shared/operations/sealing.py``): the data
    keys, whose data a job holds, and the job with personal data erased (the clear part)."""

    keys: SubjectKeys
    subject_of: Callable[[dict[str, Any]], str | None]
    clear: Callable[[dict[str, Any]], dict[str, Any]]


async def archive_line(short: str, job: dict[str, Any],
                       sealing: Sealing | None = None) -> dict[str, Any]:
    """The archived form of one job: readable JSON; with ``sealing``, the clear part in
    ``job`` and the whole job sealed under its subject's key (none once erased)."""
    line: dict[str, Any] = {"table": short, "expired_at": int(job[EXPIRES_AT])}
    subject = sealing.subject_of(job) if sealing is not None else None
    if sealing is None or subject is None:
        return {**line, "job": readable(job)}
    line.update(subject=subject, job=readable(sealing.clear(job)))
    key = await sealing.keys.key(subject)
    if key is not None:
        whole = json.dumps(readable(job), sort_keys=True, separators=(",", ":"))
        line["sealed"] = seal(key, whole.encode())
    return line


def encode(lines: list[dict[str, Any]]) -> bytes:
    """JSON lines, gzip with a fixed header (no time, no name): same lines, same bytes."""
    text = "".join(json.dumps(line, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False) + "\n" for line in lines)
    return gzip.compress(text.encode(), mtime=0)


def decode(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(body).decode().splitlines() if line]


class Archive:
    """The archive bucket: write an object once, read it, find a request id's."""

    def __init__(self, s3: S3Client, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    async def exists(self, key: str) -> bool:
        try:
            await self.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except Exception as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    async def put(self, key: str, body: bytes) -> bool:
        """Write ``key`` unless it is there (Object Lock keeps every version: a second
        write would be a second copy). Returns whether it wrote."""
        if await self.exists(key):
            return False
        await self.s3.put_object(Bucket=self.bucket, Key=key, Body=body,
                                 ContentType="application/x-ndjson", ContentEncoding="gzip")
        return True

    async def get(self, key: str) -> list[dict[str, Any]] | None:
        try:
            resp = await self.s3.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        async with resp["Body"] as stream:
            return decode(await stream.read())

    async def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` (all pages)."""
        out: list[str] = []
        async for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    async def find(self, short: str, request_id: str, *, stone: dict[str, Any] | None = None
                   ) -> tuple[str, list[dict[str, Any]]] | None:
        """The archived lines of ``request_id`` in table ``short``, with their key.

        With the job's tombstone, one read; without (past the idempotency horizon), one
        ``HeadObject`` per date partition, newest first.
        """
        if stone is not None and stone.get("archive_key"):
            lines = await self.get(str(stone["archive_key"]))
            if lines is not None:
                return str(stone["archive_key"]), lines
        days: list[str] = []
        async for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{short}/dt=", Delimiter="/"):
            days += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        for day in sorted(days, reverse=True):
            key = f"{day}{request_id}{SUFFIX}"
            if await self.exists(key):
                lines = await self.get(key)
                if lines is not None:
                    return key, lines
        return None


@dataclass(frozen=True)
class ArchiveTarget:
    """One job table the archiver follows: its full name, its short (API) name, and how
    long a tombstone outlives the job (``REMITFLOW_IDEMPOTENCY_DAYS``)."""

    table: str
    short: str
    keep_s: float


class Archiver:
    """The stream processor of one job table (see the module docstring)."""

    def __init__(self, archive: Archive, tombstones: Tombstones, target: ArchiveTarget,
                 sealing: Sealing | None = None) -> None:
        self.archive = archive
        self.tombstones = tombstones
        self.target = target
        self.sealing = sealing
        self.written = 0      # objects this process wrote (the crash tests' count)

    async def on_records(self, records: list[Record]) -> None:
        for record in records:
            await self.handle(record)

    async def handle(self, record: Record) -> None:
        table = self.target.table
        if record.event == "REMOVE":
            old = from_item(record.old_image) if record.old_image else None
            if not record.expired or old is None or old.get(EXPIRES_AT) is None:
                ARCHIVED.labels(table=table, outcome="not_expiry").inc()
                log.info("archive.deleted_not_expired", table=table,
                         request_id=(old or {}).get("request_id"), by=record.user_identity)
                return
            key = archive_key(self.target.short, old)
            line = await archive_line(self.target.short, old, self.sealing)
            written = await self.archive.put(key, encode([line]))
            self.written += written
            fault_point("archive.after_put", self.written)   # crash tests: before checkpoint
            await self.tombstones.put(table, old, keep_s=self.target.keep_s, archive_key=key)
            ARCHIVED.labels(table=table, outcome="archived" if written else "already").inc()
            log.info("archive.archived", table=table, request_id=old["request_id"], key=key,
                     replayed=not written)
            return
        if record.new_image is None:
            return
        new = from_item(record.new_image)
        if not finished(new):
            return
        before = from_item(record.old_image) if record.old_image else {}
        if finished(before) and before.get("status") == new.get("status") \
                and before.get(EXPIRES_AT) == new.get(EXPIRES_AT):
            return              # a later change to a finished job: its tombstone stands
        await self.tombstones.put(table, new, keep_s=self.target.keep_s,
                                  archive_key=archive_key(self.target.short, new))
        ARCHIVED.labels(table=table, outcome="tombstone").inc()


class ArchiveLookup:
    """An expired job by table and request id: its tombstone, then the archive."""

    def __init__(self, archive: Archive, tombstones: Tombstones,
                 tables: Mapping[str, str], keys: SubjectKeys | None = None) -> None:
        """``tables``: short (API) name → full job table name; ``keys``: to unseal."""
        self.archive = archive
        self.tombstones = tombstones
        self.tables = dict(tables)
        self.keys = keys

    async def find(self, short: str, request_id: str) -> tuple[str, dict[str, Any]] | None:
        """(archive key, the archived job) or None. A sealed job is unsealed while its
        subject's key exists; after erasure, the clear part (``erased: true``)."""
        stone = await self.tombstones.get(self.tables[short], request_id)
        found = await self.archive.find(short, request_id, stone=stone)
        if found is None or not found[1]:
            return None
        key, lines = found
        line = lines[-1]
        job = dict(line["job"])
        if line.get("subject"):
            data_key = (await self.keys.existing(str(line["subject"]))
                        if self.keys is not None else None)
            if data_key is not None and line.get("sealed"):
                job = json.loads(unseal(data_key, line["sealed"]))
            else:
                job["erased"] = True
        return key, job
