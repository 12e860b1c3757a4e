"""The sweeper's ``/v1`` routes: list jobs by index state, re-drive one by hand, sweep now.

Listing reads only the sparse indexes (a finished job is in none), page by page;
the cursor is opaque (base64 of the index cursor, bound to its table and state).
Errors are ``{"error": ...}`` through :class:`HTTPException` (see
:func:`shared.api.create_app`); auth is applied there too.
"""

from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from shared.aws.clients import error_code
from shared.pipeline.jobs import INDEX_SORT, JobNotFound, VersionConflict
from shared.pipeline.operator import NotResolvable, Outcome
from shared.pipeline.sweep import NotRedrivable, Sweeper

STATES = tuple(INDEX_SORT)
MAX_LIMIT = 500


def encode_cursor(table: str, state: str, cursor: dict[str, Any] | None) -> str | None:
    if cursor is None:
        return None
    raw = json.dumps({"t": table, "s": state, "c": cursor}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(table: str, state: str, token: str) -> dict[str, Any]:
    """The index cursor inside ``token``; 400 when it is garbled or for another listing."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = raw["c"]
        valid = (raw["t"] == table and raw["s"] == state and isinstance(cursor, dict)
                 and isinstance(cursor.get("shard"), int)
                 and isinstance(cursor.get("key", {}), dict))
    except (ValueError, TypeError, KeyError, binascii.Error):
        valid = False
    if not valid:
        raise HTTPException(status_code=400, detail="invalid cursor for this table and state")
    return dict(cursor)


class Resolution(BaseModel):
    """An operator's decision on a send whose outcome is unknown."""

    outcome: Outcome
    note: str = Field(default="", max_length=500)


def jobs_router(sweeper: Sweeper) -> APIRouter:
    router = APIRouter()

    @router.get("/jobs")
    async def list_jobs(table: str = "remittances", state: str = "failed",
                        cursor: str | None = None, limit: str = "100") -> dict[str, Any]:
        if table not in sweeper.targets:
            raise HTTPException(status_code=400,
                                detail=f"table must be one of {sorted(sweeper.targets)}")
        if state not in STATES:
            raise HTTPException(status_code=400, detail=f"state must be one of {list(STATES)}")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
            raise HTTPException(status_code=400,
                                detail=f"limit must be an integer from 1 to {MAX_LIMIT}")
        start = decode_cursor(table, state, cursor) if cursor else None
        store = sweeper.targets[table].store
        if start is not None and not 0 <= start["shard"] < store.shards:
            raise HTTPException(status_code=400, detail="invalid cursor for this table and state")
        try:
            jobs, nxt, _ = await store.query_index(state, limit=int(limit), cursor=start)
        except Exception as exc:
            if error_code(exc) == "ValidationException" and start is not None:
                raise HTTPException(status_code=400, detail="invalid cursor") from exc
            raise
        sort_key = INDEX_SORT[state]
        views = []
        for job in jobs:
            view = job.public()
            value = job.raw.get(sort_key)
            view[sort_key] = int(value) if isinstance(value, Decimal) else value
            views.append(view)
        return {"jobs": views, "next_cursor": encode_cursor(table, state, nxt)}

    @router.post("/jobs/{table}/{request_id}/redrive")
    async def redrive(table: str, request_id: str) -> dict[str, Any]:
        if table not in sweeper.targets:
            raise HTTPException(status_code=404, detail=f"unknown table {table}")
        try:
            job = await sweeper.redrive(table, request_id, history="redrive by api")
        except JobNotFound:
            raise HTTPException(status_code=404,
                                detail=f"no job with request_id {request_id}") from None
        except NotRedrivable as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        except VersionConflict:
            raise HTTPException(status_code=409, detail=f"{request_id} changed while being "
                                "re-driven; read it again and retry") from None
        return job.public()

    @router.post("/jobs/{table}/{request_id}/resolve")
    async def resolve(table: str, request_id: str, body: Resolution) -> dict[str, Any]:
        if table not in sweeper.targets:
            raise HTTPException(status_code=404, detail=f"unknown table {table}")
        try:
            job = await sweeper.resolve(table, request_id, body.outcome, body.note)
        except JobNotFound:
            raise HTTPException(status_code=404,
                                detail=f"no job with request_id {request_id}") from None
        except NotResolvable as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        except VersionConflict:
            raise HTTPException(status_code=409, detail=f"{request_id} changed while being "
                                "resolved; read it again and decide again") from None
        return job.public()

    @router.post("/sweep")
    async def sweep() -> dict[str, Any]:
        return (await sweeper.sweep_once(force=True)).as_dict()

    return router
