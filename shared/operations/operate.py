"""What an operator does to jobs: list them, find them, re-drive them, with an audit trail.

The one implementation behind both the jobs API (``/v1/jobs``) and the operator
console (``/console``): both call these functions, so a listing, a cursor and a
re-drive mean the same thing wherever they come from.

Read cost is stated per function. The sparse-index states (``retry``, ``failed``,
``running``) are Queries on their index, so a listing costs the backlog in that
state. ``REJECTED`` jobs and request-id prefixes are in no index: those listings
are a **bounded Scan** (at most ``scan_budget`` items read per page, continued with
the cursor), labelled as such wherever they are shown.

Every action is written into the job's ``history`` by the same version-conditioned
write that performs it (:meth:`JobStore.transition`), as
``"<action> by <actor>: <note>"`` (:func:`audit`).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from typing import Any

from shared.aws.dynamo import from_item
from shared.logs import get_logger
from shared.operations.facade import Operations
from shared.operations.sweep import REDRIVABLE, NotRedrivable
from shared.pipeline.indexes import INDEX_SORT
from shared.pipeline.jobs import (
    Job,
    JobNotFound,
    JobStore,
    VersionConflict,
    execution_name,
    iso_at,
)
from shared.redact import mask_text

log = get_logger(__name__)

INDEX_STATES = tuple(INDEX_SORT)
LIST_STATES = (*INDEX_STATES, "rejected")
MAX_LIMIT = 500
SCAN_BUDGET = 500
NOTE_MAX = 200


class InvalidRequest(ValueError):
    """Bad operator input (state, limit, cursor...): the API answers 400."""


@dataclass(frozen=True)
class Actor:
    """Who acted, as recorded in history: ``api token 1a2b3c4d``, ``console session …``."""

    label: str

    def __str__(self) -> str:
        return self.label


def audit(action: str, actor: Actor, note: str | None = None) -> str:
    """The history line of one operator action (note trimmed and masked)."""
    text = f"{action} by {actor}"
    note = " ".join((note or "").split())[:NOTE_MAX]
    return f"{text}: {mask_text(note)}" if note else text


# --- cursors ------------------------------------------------------------------------------

def encode_cursor(table: str, state: str, cursor: dict[str, Any] | None) -> str | None:
    """Opaque cursor: base64 of the index or scan position, bound to its table and listing."""
    if cursor is None:
        return None
    raw = json.dumps({"t": table, "s": state, "c": cursor}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(table: str, state: str, token: str, *, shards: int | None = None
                  ) -> dict[str, Any]:
    """The position inside ``token``; :class:`InvalidRequest` when garbled or for another listing.

    Index listings carry ``{"shard": n, "key": {...}}``; scans carry ``{"key": {...}}``.
    """
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = raw["c"]
        valid = raw["t"] == table and raw["s"] == state and isinstance(cursor, dict)
        if valid and state in INDEX_STATES:
            valid = (isinstance(cursor.get("shard"), int)
                     and isinstance(cursor.get("key", {}), dict)
                     and (shards is None or 0 <= cursor["shard"] < shards))
        elif valid:
            valid = isinstance(cursor.get("key"), dict)
    except (ValueError, TypeError, KeyError, binascii.Error):
        valid = False
    if not valid:
        raise InvalidRequest("invalid cursor for this table and state")
    return dict(cursor)


# --- listing ------------------------------------------------------------------------------

@dataclass
class JobPage:
    """One page of a listing: the jobs, the next cursor and what it cost to read."""

    state: str
    jobs: list[Job]
    next_cursor: str | None
    items_read: int
    scan: bool = False

    def views(self) -> list[dict[str, Any]]:
        """Public job views plus the state's sort key (``failed_at``, ``next_attempt_at``...)."""
        sort_key = INDEX_SORT.get(self.state)
        out = []
        for job in self.jobs:
            view = job.public()
            if sort_key:
                value = job.raw.get(sort_key)
                view[sort_key] = int(value) if isinstance(value, Decimal) else value
            out.append(view)
        return out


def _cutoff(state: str, older_than_s: float | None, now: float) -> Any:
    """The index sort key value ``older_than_s`` ago, in that key's type."""
    if older_than_s is None:
        return None
    at = now - older_than_s
    if state == "failed" or state == "rejected":
        return iso_at(at)
    return int(at)


def parse_limit(limit: str | int) -> int:
    text = str(limit)
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(text)


async def list_jobs(store: JobStore, table: str, state: str, *, limit: int = 100,
                    cursor: str | None = None, partner: str | None = None,
                    older_than_s: float | None = None, now: float | None = None) -> JobPage:
    """One page of jobs in ``state`` (``retry``/``failed``/``running``/``rejected``).

    ``older_than_s`` keeps jobs whose state's time (running since, due at, failed
    at, or last update for ``rejected``) is at least that long ago; ``partner``
    keeps jobs recorded with that partner. Index states read the index only;
    ``rejected`` is a bounded Scan (:data:`SCAN_BUDGET` items per page).
    """
    if state not in LIST_STATES:
        raise InvalidRequest(f"state must be one of {list(LIST_STATES)}")
    now = time.time() if now is None else now
    where = {"partner": partner} if partner else None
    start = decode_cursor(table, state, cursor, shards=store.shards) if cursor else None
    if state == "rejected":
        conditions = ["#status = :status"]
        names = {"#status": "status"}
        values: dict[str, Any] = {":status": {"S": "REJECTED"}}
        if partner:
            conditions.append("#partner = :partner")
            names["#partner"] = "partner"
            values[":partner"] = {"S": partner}
        cutoff = _cutoff(state, older_than_s, now)
        if cutoff is not None:
            conditions.append("#updated <= :cutoff")
            names["#updated"] = "updated_at"
            values[":cutoff"] = {"S": cutoff}
        jobs, nxt, read = await bounded_scan(store, " AND ".join(conditions), names, values,
                                             limit=limit, start=start)
        return JobPage(state, jobs, encode_cursor(table, state, nxt), read, scan=True)
    jobs, position, read = await store.query_index(
        state, limit=limit, cursor=start, due_before=_cutoff(state, older_than_s, now),
        where=where)
    return JobPage(state, jobs, encode_cursor(table, state, position), read)


async def bounded_scan(store: JobStore, condition: str, names: dict[str, str],
                       values: dict[str, Any], *, limit: int,
                       start: dict[str, Any] | None = None, budget: int = SCAN_BUDGET
                       ) -> tuple[list[Job], dict[str, Any] | None, int]:
    """One Scan call reading at most ``budget`` items, keeping those matching ``condition``.

    Returns at most ``limit`` jobs, the position to continue from (``None`` at the
    end of the table) and the items read. The cost grows with the table, so every
    caller labels it and pages with the cursor instead of reading on.
    """
    kwargs: dict[str, Any] = {"TableName": store.table, "Limit": budget,
                              "FilterExpression": condition,
                              "ExpressionAttributeNames": names,
                              "ExpressionAttributeValues": values}
    if start and start.get("key"):
        kwargs["ExclusiveStartKey"] = start["key"]
    resp = await store.dynamodb.scan(**kwargs)
    items = resp.get("Items", [])
    jobs = [Job.from_raw(from_item(i)) for i in items[:limit]]
    if len(items) > limit:
        nxt: dict[str, Any] | None = {"key": {"request_id": {"S": jobs[-1].request_id}}}
    else:
        last = resp.get("LastEvaluatedKey")
        nxt = {"key": last} if last else None
    return jobs, nxt, int(resp.get("ScannedCount", 0))


async def find_prefix(store: JobStore, table: str, prefix: str, *, cursor: str | None = None,
                      limit: int = 50, budget: int = SCAN_BUDGET) -> JobPage:
    """Jobs whose request id starts with ``prefix``: a bounded Scan with ``begins_with``.

    DynamoDB can only look a key up exactly (the table has no sort key), so a
    prefix is a filtered Scan: each call reads at most ``budget`` items of the
    table in key-hash order, wherever the matches are; "more" continues.
    """
    if not prefix:
        raise InvalidRequest("a prefix needs at least one character")
    state = f"prefix:{prefix}"
    start = decode_cursor(table, state, cursor) if cursor else None
    jobs, nxt, read = await bounded_scan(
        store, "begins_with(#id, :prefix)", {"#id": "request_id"},
        {":prefix": {"S": prefix}}, limit=limit, start=start, budget=budget)
    return JobPage(state, jobs, encode_cursor(table, state, nxt), read, scan=True)


# --- counting -----------------------------------------------------------------------------

DUE_BUCKETS_S = (0, 60, 300, 3600)


async def backlog(store: JobStore) -> dict[str, int]:
    """Jobs per sparse-index state (``Select=COUNT``, the sweeper's own backlog query)."""
    return {state: (await store.count_index(state))[0] for state in INDEX_STATES}


async def retry_due(store: JobStore, now: float | None = None) -> dict[str, int]:
    """The retry backlog by due time: overdue now, within a minute, 5 minutes, an hour, later.

    One ``Select=COUNT`` per bucket edge on ``retry-index`` (sort key ``next_attempt_at``).
    """
    now = time.time() if now is None else now
    edges = [(await store.count_index("retry", due_before=int(now + s)))[0]
             for s in DUE_BUCKETS_S]
    total = (await store.count_index("retry"))[0]
    labels = ("due now", "within 1 min", "within 5 min", "within 1 h", "later")
    counts = [edges[0], *(b - a for a, b in pairwise(edges)),
              total - edges[-1]]
    return dict(zip(labels, counts, strict=True))


# --- acting -------------------------------------------------------------------------------

@dataclass
class RedriveOutcome:
    """What one re-drive did: ``redriven`` with the new attempt, or why not."""

    request_id: str
    ok: bool
    detail: str
    job: Job | None = field(default=None, repr=False)


async def redrive(ops: Operations, short: str, request_id: str, *, actor: Actor,
                  note: str | None = None) -> Job:
    """Re-drive one ``FAILED``/``REJECTED`` job as its next attempt, audited in its history.

    Raises :class:`LookupError` (unknown table), :class:`JobNotFound`,
    :class:`NotRedrivable` or :class:`VersionConflict`, as :meth:`Operations.redrive`.
    """
    job = await ops.redrive(short, request_id, history=audit("redrive", actor, note))
    log.info("operator.redrive", request_id=request_id, table=short, actor=str(actor),
             attempt=job.attempt)
    return job


async def redrive_many(ops: Operations, short: str, request_ids: Sequence[str], *,
                       actor: Actor, note: str | None = None) -> list[RedriveOutcome]:
    """Re-drive each id in turn; one failing never stops the others."""
    out = []
    for request_id in dict.fromkeys(request_ids):
        try:
            job = await redrive(ops, short, request_id, actor=actor, note=note)
        except JobNotFound:
            out.append(RedriveOutcome(request_id, False, "no such job"))
        except NotRedrivable as exc:
            out.append(RedriveOutcome(request_id, False, str(exc)))
        except VersionConflict:
            out.append(RedriveOutcome(request_id, False, "changed while being re-driven; "
                                      "read it again and retry"))
        else:
            out.append(RedriveOutcome(request_id, True, f"RUNNING as attempt {job.attempt} "
                                      f"({job.execution_name})", job))
    return out


async def plan_redrive(ops: Operations, short: str, request_ids: Sequence[str]
                       ) -> list[Mapping[str, Any]]:
    """What re-driving these ids would do, for a confirmation page (reads, writes nothing)."""
    store = ops.target(short).store
    plan: list[Mapping[str, Any]] = []
    for request_id in dict.fromkeys(request_ids):
        job = await store.get(request_id)
        if job is None:
            plan.append({"request_id": request_id, "ok": False, "what": "no such job: skipped"})
        elif job.status not in REDRIVABLE:
            plan.append({"request_id": request_id, "ok": False, "status": job.status.value,
                         "what": f"{job.status.value}: not re-drivable, skipped"})
        else:
            nxt = job.attempt + 1
            plan.append({"request_id": request_id, "ok": True, "status": job.status.value,
                         "what": f"{job.status.value} → RUNNING as attempt {nxt}, new "
                                 f"execution {execution_name(request_id, nxt)}"})
    return plan
