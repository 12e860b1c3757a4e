"""The console's job pages: sign-in, overview, search, timeline, lists and re-drive.

Each page reads through :mod:`shared.operations.operate` and
:mod:`shared.operations.timeline`, the functions the jobs API uses: the console is
a view, never a second implementation.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from prometheus_client import REGISTRY

from services.sweeper.console.app import HERE, Console, first
from services.sweeper.console.session import Session
from shared.operations import operate
from shared.operations.operate import InvalidRequest
from shared.operations.resolve import NotResolvable
from shared.operations.timeline import timeline
from shared.pipeline.jobs import JobNotFound, VersionConflict, valid_request_id
from shared.stream.leases import ShardLeaseTable

LIST_LIMIT = 50
REFRESH_S = 10


ID_RULE = "A request id has 1 to 128 of the characters A-Z a-z 0-9 . _ : -"


def _safe_next(value: str) -> str:
    return value if value.startswith("/console") and "//" not in value else "/console"


def add_pages(console: Console) -> None:
    """Every page of the console, one function each."""
    for add in (add_static, add_sign_in, add_overview, add_search, add_timeline, add_jobs,
                add_redrive, add_resolve):
        add(console)


def add_static(console: Console) -> None:
    """The console's stylesheet."""
    router = console.router

    @router.get("/static/console.css")
    async def css() -> Response:
        return FileResponse(HERE / "static" / "console.css", media_type="text/css")


def add_sign_in(console: Console) -> None:
    """Sign-in and sign-out: the API token for a session cookie."""
    router = console.router

    @router.get("/login")
    async def login_page(request: Request, next: str = "/console") -> Response:
        session, fresh = await console.session(request)
        return console.render(request, session, "login.html", fresh=fresh,
                              next=_safe_next(next), error=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        gate = await console.post_gate(request, need_sign_in=False)
        if isinstance(gate, Response):
            return gate
        session, form = gate
        target = _safe_next(first(form, "next", "/console"))
        if console.sessions.auth and not console.sessions.check_token(first(form, "token")):
            return console.render(request, session, "login.html", status=401, next=target,
                                  error="That is not the API token.")
        response = RedirectResponse(target, 303)
        console.sessions.set_cookie(response, request, await console.sessions.sign_in())
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        gate = await console.post_gate(request)
        if isinstance(gate, Response):
            return gate
        await console.sessions.sign_out(gate[0])  # a copied cookie dies too
        response = RedirectResponse("/console/login", 303)
        console.sessions.clear_cookie(response)
        return response


def add_overview(console: Console) -> None:
    """Overview: jobs per state, retry backlog, DLQ depths, last sweep, shard readers."""
    router = console.router
    ops = console.ops

    @router.get("")
    async def overview(request: Request) -> Response:
        session = await console.gate(request)
        if isinstance(session, Response):
            return session
        now = time.time()
        tables = []
        for short, target in ops.targets.items():
            leases = await ShardLeaseTable(target.store.dynamodb, console.leases_table,
                                           target.table, "console").current()
            tables.append({"short": short, "table": target.table,
                           "backlog": await operate.backlog(target.store),
                           "due": await operate.retry_due(target.store, now),
                           "shards": leases})
        last = REGISTRY.get_sample_value("remitflow_sweeper_last_success_timestamp_seconds")
        leader = REGISTRY.get_sample_value("remitflow_sweeper_leader")
        return console.render(request, session, "overview.html", tables=tables,
                              dlqs=await console.letters.depths(), refresh=REFRESH_S,
                              last_sweep=last or None, leader=bool(leader),
                              interval_s=ops.interval_s)


def add_search(console: Console) -> None:
    """Find a remittance: an exact request id, or a prefix (a bounded Scan)."""
    router = console.router
    ops = console.ops

    @router.get("/search")
    async def search(request: Request, q: str = "", mode: str = "exact",
                     table: str = "", cursor: str = "") -> Response:
        session = await console.gate(request)
        if isinstance(session, Response):
            return session
        q = q.strip()[:128]
        if q and mode == "exact" and not valid_request_id(q):
            return console.render(request, session, "search.html", budget=operate.SCAN_BUDGET,
                                  status=400, q=q, mode=mode, table=ops.tables[0],
                                  page=None, error=ID_RULE)
        table = table if table in ops.targets else ops.tables[0]
        context: dict[str, Any] = {"q": q, "mode": mode, "table": table, "page": None,
                                   "error": None}
        if q and mode == "exact":
            found = await timeline(ops.targets, q, executions=False,
                                   archive=console.archive)
            if found.found:
                return RedirectResponse(f"/console/requests/{quote(q, safe='')}", 303)
            context["error"] = f"No job has the request id {q!r} (exact match)."
        elif q and mode == "prefix":
            try:
                context["page"] = await operate.find_prefix(
                    ops.targets[table].store, table, q, cursor=cursor or None,
                    limit=LIST_LIMIT)
            except InvalidRequest as exc:
                context["error"] = str(exc)
        return console.render(request, session, "search.html", budget=operate.SCAN_BUDGET,
                              **context)


def add_timeline(console: Console) -> None:
    """One request id through every job table and execution."""
    router = console.router
    ops = console.ops

    @router.get("/requests/{request_id}")
    async def request_timeline(request: Request, request_id: str) -> Response:
        session = await console.gate(request)
        if isinstance(session, Response):
            return session
        if not valid_request_id(request_id):
            return console.render(request, session, "error.html", status=400,
                                  title="Not a request id", message=ID_RULE)
        found = await timeline(ops.targets, request_id, archive=console.archive)
        return console.render(request, session, "timeline.html", timeline=found,
                              status=200 if found.found else 404,
                              redrivable=("FAILED", "REJECTED"))


def add_jobs(console: Console) -> None:
    """Jobs by state, filtered by partner and age."""
    router = console.router
    ops = console.ops

    @router.get("/jobs")
    async def jobs(request: Request, table: str = "", state: str = "failed",
                   partner: str = "", older_than_min: str = "", cursor: str = "") -> Response:
        session = await console.gate(request)
        if isinstance(session, Response):
            return session
        table = table if table in ops.targets else ops.tables[0]
        context: dict[str, Any] = {"table": table, "state": state, "partner": partner.strip(),
                                   "older_than_min": older_than_min.strip(), "page": None,
                                   "error": None, "states": operate.LIST_STATES,
                                   "budget": operate.SCAN_BUDGET}
        try:
            minutes = context["older_than_min"]
            if minutes and not minutes.replace(".", "", 1).isdigit():
                raise InvalidRequest("age must be a number of minutes")
            context["page"] = await operate.list_jobs(
                ops.targets[table].store, table, state, limit=LIST_LIMIT,
                cursor=cursor or None, partner=context["partner"] or None,
                older_than_s=float(minutes) * 60 if minutes else None)
        except InvalidRequest as exc:
            context["error"] = str(exc)
        return console.render(request, session, "jobs.html",
                              status=400 if context["error"] else 200, **context)


def add_redrive(console: Console) -> None:
    """Re-drive a selection of jobs, after a confirmation page."""
    router = console.router
    ops = console.ops

    def selection(form: dict[str, list[str]]) -> tuple[str, list[str]]:
        """The table and request ids a re-drive form names (at most a page of them)."""
        ids = [i.strip() for i in form.get("request_id", []) if i.strip()]
        return first(form, "table"), [i for i in ids if valid_request_id(i)][:operate.MAX_LIMIT]

    async def redrive_form(request: Request
                           ) -> Response | tuple[Session, dict[str, list[str]], str, list[str]]:
        """A re-drive form past the gate: its session, form, table and request ids, or
        the answer (refused, or nothing of a known table selected)."""
        gate = await console.post_gate(request)
        if isinstance(gate, Response):
            return gate
        session, form = gate
        table, ids = selection(form)
        if table not in ops.targets or not ids:
            return console.render(request, session, "error.html", status=400,
                                  title="Nothing to re-drive",
                                  message="Select at least one job of a known table.")
        return session, form, table, ids

    @router.post("/redrive/confirm")
    async def redrive_confirm(request: Request) -> Response:
        picked = await redrive_form(request)
        if isinstance(picked, Response):
            return picked
        session, _, table, ids = picked
        plan = await operate.plan_redrive(ops, table, ids)
        return console.render(request, session, "redrive_confirm.html", table=table,
                              plan=plan, ready=[p["request_id"] for p in plan if p["ok"]])

    @router.post("/redrive")
    async def redrive(request: Request) -> Response:
        picked = await redrive_form(request)
        if isinstance(picked, Response):
            return picked
        session, form, table, ids = picked
        outcomes = await operate.redrive_many(ops, table, ids, actor=session.actor,
                                              note=first(form, "note") or None)
        return console.render(request, session, "redrive_done.html", table=table,
                              outcomes=outcomes)


def add_resolve(console: Console) -> None:
    """An operator's decision on an unknown delivery outcome."""
    router = console.router
    ops = console.ops

    @router.post("/resolve")
    async def resolve(request: Request) -> Response:
        """An operator's decision on an unknown delivery outcome: the same
        ``Sweeper.resolve`` as ``POST /v1/jobs/{table}/{id}/resolve``, recorded with the
        console session and the note."""
        gate = await console.post_gate(request)
        if isinstance(gate, Response):
            return gate
        session, form = gate
        table, request_id = first(form, "table"), first(form, "request_id").strip()
        outcome, note = first(form, "outcome"), first(form, "note").strip()
        if not valid_request_id(request_id):
            return console.render(request, session, "error.html", status=400,
                                  title="Not a request id", message=ID_RULE)
        if table not in ops.targets or outcome not in ("sent", "not_sent") or not note:
            return console.render(request, session, "error.html", status=400,
                                  title="Nothing resolved",
                                  message="Choose sent or not sent and say what you checked.")
        try:
            await ops.resolve(table, request_id, outcome,  # type: ignore[arg-type]
                                  note, by=str(session.actor))
        except (JobNotFound, NotResolvable, VersionConflict) as exc:
            return console.render(request, session, "error.html", status=409,
                                  title="Not resolved", message=str(exc) or type(exc).__name__)
        return RedirectResponse(f"/console/requests/{quote(request_id, safe='')}", 303)
