"""Job tables: typed, version-checked access and the job state machine.

States and transitions: ``docs/architecture.md``, "Job states".

Every write is conditioned on the ``version`` the caller read and increments it;
a lost race raises :class:`VersionConflict` and the caller re-reads and
re-decides, it never overwrites. :meth:`JobStore.transition` is the only way to
change ``status``, and it sets or removes the sparse index attributes
(``running_job``, ``retry_job``, ``failed_job``) in the same write, so a job is
in at most one index and a finished job is in none.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

from botocore.exceptions import ClientError
from fastapi import Path

from shared.aws.clients import error_code
from shared.aws.dynamo import from_item, own_write, to_item, to_value
from shared.logs import get_logger
from shared.metrics import JOB_WRITES_RECOGNISED
from shared.pipeline import indexes
from shared.pipeline.indexes import INDEX_SORT
from shared.pipeline.lifecycle import DEFAULT_RETENTION_S, EXPIRES_AT, Tombstones, expiry

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

log = get_logger(__name__)


WRITE_TOKEN = "write_token"
"""Set by every version write: recognises our own write when its answer was lost."""


class Status(StrEnum):
    RECEIVED = "RECEIVED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    SENT = "SENT"
    RETRY_PENDING = "RETRY_PENDING"
    FAILED = "FAILED"
    REJECTED = "REJECTED"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.RECEIVED: frozenset({Status.RUNNING, Status.RETRY_PENDING}),
    Status.RUNNING: frozenset({Status.COMPLETED, Status.SENT, Status.RETRY_PENDING,
                               Status.REJECTED, Status.FAILED}),
    Status.RETRY_PENDING: frozenset({Status.RUNNING, Status.FAILED}),
    # FAILED -> success: an operator settles an unknown outcome as done (sweep.resolve)
    Status.FAILED: frozenset({Status.RUNNING, Status.COMPLETED, Status.SENT}),
    Status.REJECTED: frozenset({Status.RUNNING}),
    Status.COMPLETED: frozenset(),
    Status.SENT: frozenset(),
}
INDEX_ATTRIBUTE: dict[Status, str] = {
    Status.RUNNING: "running_job",
    Status.RETRY_PENDING: "retry_job",
    Status.FAILED: "failed_job",
}
# A published job enters the hand-off index when it succeeds and stays there (keys
# only): the sweeper checks each one once after a grace period, by time window
# (shared/operations/handoff.py; docs/architecture.md, "Hand-off check").
HANDOFF_INDEX, HANDOFF_SHARD, HANDOFF_AT = "handoff-index", "handoff_job", "handoff_at"
KEEP_IN_FLIGHT_S = 60.0   # see JobStore._in_flight_since
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class InvalidTransition(ValueError):
    """A status change the job state machine does not allow."""


class VersionConflict(Exception):
    """Someone else wrote the item since we read it: re-read and re-decide."""


class JobNotFound(KeyError):
    pass


def iso_at(unix_s: float) -> str:
    """Unix seconds in the jobs' time format (UTC, milliseconds, ``Z``): strings that sort
    as the times do."""
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def now_iso() -> str:
    return iso_at(time.time())


def execution_name(request_id: str, attempt: int) -> str:
    """Deterministic Step Functions execution name for one attempt (≤ 80 chars).

    A pure function of ``(request_id, attempt)``: two processes re-driving the same
    attempt start one execution. Ids that do not fit the name rules are hashed.
    """
    suffix = f"-a{attempt}"
    if _SAFE_NAME.match(request_id) and len(request_id) + len(suffix) <= 80:
        return request_id + suffix
    digest = hashlib.sha256(request_id.encode()).hexdigest()[:24]
    head = re.sub(r"[^A-Za-z0-9_.-]", "_", request_id)[: 80 - len(suffix) - 25]
    return f"{head}-{digest}{suffix}"


def index_shard(request_id: str, shards: int) -> str:
    """Sparse index partition value: a few shards so no partition gets hot."""
    return f"s{int(hashlib.sha1(request_id.encode()).hexdigest()[:8], 16) % shards}"


# The intake's rule for a request id (the partner contract's, services/enrichment/models.py
# uses it): every edge that takes an id (API paths, console pages and forms) checks it
# before any AWS call, so a malformed id is a 4xx, never a DynamoDB error.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
# A ``{request_id}`` path parameter under the intake's rule: 422 before any AWS call.
RequestIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=REQUEST_ID_PATTERN)]
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def valid_request_id(value: str) -> bool:
    """Whether ``value`` follows the intake's request-id rule (1-128 of ``[A-Za-z0-9._:-]``)."""
    return _REQUEST_ID.fullmatch(value) is not None


def content_hash(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Job:
    request_id: str
    status: Status
    version: int
    attempt: int
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> Job:
        return cls(
            request_id=raw["request_id"], status=Status(raw["status"]),
            version=int(raw["version"]), attempt=int(raw.get("attempt", 0)), raw=raw,
        )

    @property
    def execution_name(self) -> str | None:
        value = self.raw.get("execution_name")
        return str(value) if value else None

    def public(self) -> dict[str, Any]:
        """The JSON view of the status routes (no index bookkeeping, no payload internals)."""
        hidden = {"payload", "payload_sha256", *INDEX_ATTRIBUTE.values(), "running_since",
                  "next_attempt_at", "failed_at", WRITE_TOKEN}
        out: dict[str, Any] = {k: _jsonable(v) for k, v in self.raw.items() if k not in hidden}
        out.setdefault("last_error", None)
        out.setdefault("execution_arn", None)
        for key in ("advice", "delivery"):
            if isinstance(out.get(key), str):
                out[key] = json.loads(out[key])
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class JobStore:
    """Typed access to one job table (``remitflow-remittances`` or ``-notifications``)."""

    def __init__(self, dynamodb: DynamoDBClient, table: str, *, shards: int = 4,
                 success: Status = Status.COMPLETED, handoff: bool = False,
                 retention_s: float = DEFAULT_RETENTION_S,
                 tombstones: Tombstones | None = None) -> None:
        """``retention_s``: how long a finished job is kept (its ``expires_at``);
        ``tombstones``: where intake finds jobs that already expired (None: nowhere)."""
        self.dynamodb = dynamodb
        self.table = table
        self.shards = shards
        self.success = success
        self.handoff = handoff
        self.retention_s = retention_s
        self.tombstones = tombstones

    async def create(self, request_id: str, payload: str, payload_sha256: str,
                     extra: dict[str, Any] | None = None) -> Job | None:
        """Insert a new job in ``RECEIVED``; ``None`` if the id exists (nothing written).

        Returns the existing job instead via :meth:`get` when the caller needs to
        compare content: the condition is ``attribute_not_exists(request_id)``.
        """
        ts = now_iso()
        # A new job is already "in flight": it sits in the running index from the
        # start, so one whose stream record was never processed (lost past the
        # stream's 24 h retention) is still found and started by the sweeper.
        values = {"request_id": request_id, "status": Status.RECEIVED.value, "version": 1,
                  "attempt": 0, "payload": payload, "payload_sha256": payload_sha256,
                  "created_at": ts, "updated_at": ts,
                  "running_job": index_shard(request_id, self.shards),
                  "running_since": int(time.time()), **(extra or {})}
        try:
            await self.dynamodb.put_item(
                TableName=self.table, Item=to_item(values),
                ConditionExpression="attribute_not_exists(request_id)")
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return Job.from_raw(values)

    async def get(self, request_id: str, *, consistent: bool = True) -> Job | None:
        resp = await self.dynamodb.get_item(
            TableName=self.table, Key={"request_id": {"S": request_id}},
            ConsistentRead=consistent)
        item = resp.get("Item")
        return Job.from_raw(from_item(item)) if item else None

    async def require(self, request_id: str) -> Job:
        job = await self.get(request_id)
        if job is None:
            raise JobNotFound(request_id)
        return job

    async def transition(self, job: Job, to: Status, *, set_: dict[str, Any] | None = None,
                         remove: tuple[str, ...] = (), sort_value: Any = None,
                         history: str | None = None) -> Job:
        """Move ``job`` to ``to``, conditioned on its version; maintain the sparse indexes.

        ``sort_value`` is the index sort key for the target state (``running_since``,
        ``next_attempt_at`` or ``failed_at``). Raises :class:`VersionConflict` on a
        lost race and :class:`InvalidTransition` for a move the state machine forbids.
        """
        if to not in TRANSITIONS[job.status]:
            raise InvalidTransition(f"{job.request_id}: {job.status} -> {to} is not allowed")
        ts = now_iso()
        sets: dict[str, Any] = {"status": to.value, "updated_at": ts, **(set_ or {})}
        removes = set(remove)
        for status, attr in INDEX_ATTRIBUTE.items():
            state = {"running_job": "running", "retry_job": "retry", "failed_job": "failed"}[attr]
            if status == to and self._in_flight_since(job, to, sort_value):
                continue   # already in running-index since just now: no key rewrite
            if status == to:
                sets[attr] = index_shard(job.request_id, self.shards)
                sets[INDEX_SORT[state]] = sort_value if sort_value is not None else (
                    ts if state == "failed" else int(time.time()))
            else:
                removes.update({attr, INDEX_SORT[state]})
        if to in (self.success, Status.REJECTED):
            sets[EXPIRES_AT] = expiry(self.retention_s)   # finished: DynamoDB TTL expires it
        elif job.raw.get(EXPIRES_AT) is not None:
            removes.add(EXPIRES_AT)                       # unfinished again: never expires
        if self.handoff and to is self.success:
            # as the workflow's success write does: into the hand-off index
            sets[HANDOFF_SHARD] = index_shard(job.request_id, self.shards)
            sets[HANDOFF_AT] = ts
        removes -= set(sets)
        return await self._update(job, sets, removes, history=history)

    @staticmethod
    def _in_flight_since(job: Job, to: Status, sort_value: Any) -> bool:
        """A new job sits in ``running-index`` from its creation; its first start within
        :data:`KEEP_IN_FLIGHT_S` keeps that entry. Rewriting ``running_since`` would
        move the index key: a delete and a put in the index for no decision anyone
        makes (the sweep's checks measure from it, and a minute earlier is harmless)."""
        if to is not Status.RUNNING or job.status is not Status.RECEIVED:
            return False
        since = job.raw.get("running_since")
        if not job.raw.get("running_job") or since is None:
            return False
        now = float(sort_value) if sort_value is not None else time.time()
        return 0 <= now - float(since) <= KEEP_IN_FLIGHT_S

    async def update(self, job: Job, set_: dict[str, Any], remove: tuple[str, ...] = (),
                     *, history: str | None = None) -> Job:
        """Change non-status attributes (e.g. record a delivery), conditioned on version."""
        if "status" in set_:
            raise InvalidTransition("use transition() to change status")
        return await self._update(job, {**set_, "updated_at": now_iso()}, set(remove),
                                  history=history)

    async def _update(self, job: Job, sets: dict[str, Any], removes: set[str],
                      history: str | None = None) -> Job:
        token = uuid.uuid4().hex
        names: dict[str, str] = {"#version": "version", "#token": WRITE_TOKEN}
        values: dict[str, Any] = {":expected": {"N": str(job.version)}, ":one": {"N": "1"},
                                  ":token": {"S": token}}
        parts = ["#version = #version + :one", "#token = :token"]
        for i, (key, value) in enumerate(sets.items()):
            names[f"#s{i}"] = key
            values[f":s{i}"] = to_value(value)
            parts.append(f"#s{i} = :s{i}")
        if history:
            names["#history"] = "history"
            values[":entry"] = {"L": [to_value(f"{now_iso()} {history}")]}
            values[":empty"] = {"L": []}
            parts.append("#history = list_append(if_not_exists(#history, :empty), :entry)")
        expression = "SET " + ", ".join(parts)
        if removes:
            for i, key in enumerate(sorted(removes)):
                names[f"#r{i}"] = key
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removes)))
        try:
            resp = await self.dynamodb.update_item(
                TableName=self.table, Key={"request_id": {"S": job.request_id}},
                UpdateExpression=expression, ConditionExpression="#version = :expected",
                ExpressionAttributeNames=names, ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            # A write committed while its answer was lost (timeout, 500), then retried
            # by botocore against our own new version: recognise it by its token.
            item = await own_write(self.dynamodb, self.table,
                                   {"request_id": {"S": job.request_id}}, token, exc,
                                   token_attribute=WRITE_TOKEN)
            if item is None:
                raise VersionConflict(job.request_id) from exc
            mine = Job.from_raw(from_item(item))
            JOB_WRITES_RECOGNISED.labels(table=self.table).inc()
            log.info("jobs.write_recognised", request_id=job.request_id, version=mine.version)
            return mine
        return Job.from_raw(from_item(resp["Attributes"]))

    async def query_index(self, state: str, *, due_before: Any = None, limit: int = 100,
                          cursor: dict[str, Any] | None = None,
                          where: dict[str, str] | None = None
                          ) -> tuple[list[Job], dict[str, Any] | None, int]:
        """Page through one sparse index (all shards); returns jobs, cursor, entries read.

        The index holds keys only: each page is a ``Query`` then a strongly consistent
        ``BatchGetItem`` (:func:`shared.pipeline.indexes.read_page`). Jobs that left
        the state since the index was read are dropped, and ``where`` keeps only
        items whose attributes equal the given strings, so a page may come back short.
        """
        rows, nxt, scanned = await indexes.read_page(
            self.dynamodb, self.table, state, shards=self.shards, due_before=due_before,
            limit=limit, cursor=cursor, where=where)
        return [Job.from_raw(row) for row in rows], nxt, scanned

    async def count_index(self, state: str, *, due_before: Any = None) -> tuple[int, int]:
        """``Select=COUNT`` over one sparse index, all shards: (count, entries read).

        Reads the index only and returns no items, so its cost is the backlog in that
        state, never the table. ``due_before`` bounds the index sort key (inclusive).
        """
        return await indexes.count(self.dynamodb, self.table, state, shards=self.shards,
                                   due_before=due_before)
