"""The sweeper's ``/v1`` routes: jobs by state, re-drive by hand, sweep now, dead letters,
erasing a payee.

A thin HTTP face over :mod:`shared.operations.operate` and
:mod:`shared.operations.deadletters`, the same functions the operator console calls:
listing reads only the sparse indexes (``rejected`` is a bounded Scan, said so in
the answer), cursors are opaque, and every re-drive is recorded in the job's
history with who asked (``api token <fingerprint>``) and the optional note.
Errors are ``{"error": ...}`` through :class:`HTTPException` (see
:func:`shared.api.create_app`); auth is applied there too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path
from pydantic import BaseModel, Field

from services.sweeper.erasure import ErasureScope, UnknownPayee, erase_payee
from shared.aws.clients import error_code
from shared.operations import operate
from shared.operations.deadletters import DeadLetters, UnknownQueue
from shared.operations.facade import Operations
from shared.operations.operate import Actor, InvalidRequest
from shared.operations.resolve import NotResolvable, Outcome
from shared.operations.sweep import NotRedrivable
from shared.pipeline.jobs import (
    REQUEST_ID_PATTERN,
    JobNotFound,
    RequestIdPath,
    VersionConflict,
)

MAX_LIMIT = operate.MAX_LIMIT


def api_actor(token: str | None) -> Actor:
    """``api token <first 8 hex of its SHA-256>``: names the token, never shows it."""
    if not token:
        return Actor("api (auth disabled)")
    return Actor(f"api token {hashlib.sha256(token.encode()).hexdigest()[:8]}")


class Resolution(BaseModel):
    """An operator's decision on a send whose outcome is unknown."""

    outcome: Outcome
    note: str = Field(default="", max_length=500)


@contextmanager
def job_errors(request_id: str, doing: str, then: str) -> Iterator[None]:
    """An operator action's refusals as HTTP errors: 404 unknown job, 409 not allowed in
    its state (the reason) or changed meanwhile (read it again)."""
    try:
        yield
    except JobNotFound:
        raise HTTPException(status_code=404,
                            detail=f"no job with request_id {request_id}") from None
    except (NotRedrivable, NotResolvable) as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except VersionConflict:
        raise HTTPException(status_code=409, detail=f"{request_id} changed while being "
                            f"{doing}; read it again and {then}") from None


def jobs_router(ops: Operations, actor: Actor | None = None) -> APIRouter:
    router = APIRouter()
    who = actor or Actor("api")

    @router.get("/jobs")
    async def list_jobs(table: str = "remittances", state: str = "failed",
                        cursor: str | None = None, limit: str = "100",
                        partner: str | None = None,
                        older_than_s: float | None = None) -> dict[str, Any]:
        if table not in ops.targets:
            raise HTTPException(status_code=400, detail=f"table must be one of {ops.tables}")
        try:
            page = await operate.list_jobs(
                ops.targets[table].store, table, state, limit=operate.parse_limit(limit),
                cursor=cursor, partner=partner or None, older_than_s=older_than_s)
        except InvalidRequest as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        except Exception as exc:
            if error_code(exc) == "ValidationException" and cursor:
                raise HTTPException(status_code=400, detail="invalid cursor") from exc
            raise
        out: dict[str, Any] = {"jobs": page.views(), "next_cursor": page.next_cursor}
        if page.scan:
            out["scan"] = {"items_read": page.items_read, "budget": operate.SCAN_BUDGET}
        return out

    @router.post("/jobs/{table}/{request_id}/redrive")
    async def redrive(table: str, request_id: RequestIdPath,
                      body: Annotated[dict[str, Any] | None, Body()] = None) -> dict[str, Any]:
        if table not in ops.targets:
            raise HTTPException(status_code=404, detail=f"unknown table {table}")
        note = str((body or {}).get("note") or "") or None
        with job_errors(request_id, "re-driven", "retry"):
            job = await operate.redrive(ops, table, request_id, actor=who, note=note)
        return job.public()

    @router.post("/jobs/{table}/{request_id}/resolve")
    async def resolve(table: str, request_id: RequestIdPath, body: Resolution) -> dict[str, Any]:
        if table not in ops.targets:
            raise HTTPException(status_code=404, detail=f"unknown table {table}")
        with job_errors(request_id, "resolved", "decide again"):
            job = await ops.resolve(table, request_id, body.outcome, body.note, by=str(who))
        return job.public()

    @router.post("/sweep")
    async def sweep() -> dict[str, Any]:
        return (await ops.sweep_now()).as_dict()

    return router


def deadletters_router(letters: DeadLetters, actor: Actor | None = None) -> APIRouter:
    """``/v1/deadletters``: depths, a peek, one masked body, replay and delete."""
    router = APIRouter()
    who = str(actor or Actor("api"))

    def check(queue: str) -> None:
        if queue not in letters.queues:
            raise HTTPException(status_code=404, detail=f"unknown dead-letter queue {queue}; "
                                f"one of {letters.queues}")

    def selection(body: dict[str, Any]) -> tuple[list[str] | None, str | None]:
        ids, reason = body.get("message_ids"), body.get("reason")
        if ids is not None and not (isinstance(ids, list)
                                    and all(isinstance(i, str) for i in ids)):
            raise HTTPException(status_code=400, detail="message_ids must be a list of strings")
        if not ids and not (isinstance(reason, str) and reason):
            raise HTTPException(status_code=400, detail="give message_ids or a reason")
        return ids or None, reason if isinstance(reason, str) and reason else None

    @router.get("/deadletters")
    async def depths() -> dict[str, Any]:
        return {"queues": [d.__dict__ for d in await letters.depths()]}

    @router.get("/deadletters/{queue}")
    async def peek(queue: str, limit: int = 100) -> dict[str, Any]:
        check(queue)
        messages = await letters.peek(queue, limit=max(1, min(limit, 1000)))
        return {"queue": queue, "messages": [m.as_dict() for m in messages]}

    @router.get("/deadletters/{queue}/messages/{message_id}")
    async def message(queue: str, message_id: str) -> dict[str, Any]:
        check(queue)
        found = await letters.get(queue, message_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no message {message_id} in {queue}")
        return found.as_dict(with_body=True)

    @router.post("/deadletters/{queue}/{action}")
    async def act(queue: str, action: str,
                  body: Annotated[dict[str, Any] | None, Body()] = None) -> dict[str, Any]:
        check(queue)
        if action not in ("replay", "delete"):
            raise HTTPException(status_code=404, detail="action must be replay or delete")
        ids, reason = selection(body or {})
        run = letters.replay if action == "replay" else letters.delete
        try:
            result = await run(queue, message_ids=ids, reason=reason, actor=who)
        except UnknownQueue as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return result.as_dict()

    return router


class Erasure(BaseModel):
    """Why a payee's personal data is erased (kept in the audit)."""

    note: str = Field(min_length=1, max_length=500)


def payees_router(scope: ErasureScope, actor: Actor | None = None) -> APIRouter:
    """``POST /v1/payees/{payee_id}/erase``: erase a payee's personal data everywhere
    (``services/sweeper/erasure.py``); the answer is the report of what was erased where."""
    router = APIRouter()
    who = str(actor or Actor("api"))

    @router.post("/payees/{payee_id}/erase")
    async def erase(payee_id: Annotated[str, Path(min_length=1, max_length=128,
                                                  pattern=REQUEST_ID_PATTERN)],
                    body: Erasure) -> dict[str, Any]:
        try:
            report = await erase_payee(scope, payee_id, by=who, note=body.note)
        except UnknownPayee:
            raise HTTPException(status_code=404, detail=f"no payee {payee_id}") from None
        except VersionConflict:
            raise HTTPException(status_code=409, detail="a job kept changing; erase again "
                                "(it is idempotent)") from None
        return report.as_dict()

    return router
