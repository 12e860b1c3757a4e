"""The console's plumbing: secure responses, sessions per request, forms, templates.

Every response under ``/console`` goes through :class:`SecureRoute`, which adds
the security headers (CSP without inline script, no framing, no caching, no
sniffing, no referrer), whatever the handler returned. Read-only pages are GETs
that work without JavaScript; every state change is a POST form whose CSRF
token is checked before anything else (:meth:`Console.post_gate`: 403 without it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.sweeper.console.session import Session, Sessions
from shared.operations.archive import ArchiveLookup
from shared.operations.deadletters import DeadLetters
from shared.operations.facade import Operations
from shared.redact import mask_text

HERE = Path(__file__).resolve().parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class SecureRoute(APIRoute):
    """An API route whose every response carries :data:`SECURITY_HEADERS`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            response = await handler(request)
            response.headers.update(SECURITY_HEADERS)
            return response

        return secured


def age(seconds: float | None) -> str:
    """``3h 05m``, ``4m 10s``, ``12s``; ``-`` for unknown."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def when(value: Any) -> str:
    """Unix seconds or an ISO string as ``YYYY-MM-DD HH:MM:SSZ``."""
    if value in (None, ""):
        return "-"
    if isinstance(value, int | float) or str(value).replace(".", "", 1).isdigit():
        return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value).replace("T", " ")[:19] + "Z"


def pretty(value: Any) -> str:
    """Indented JSON, non-ASCII kept (the template escapes it for HTML)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


class Console:
    """Shared state of the console's pages (see :mod:`services.sweeper.console.pages`)."""

    def __init__(self, ops: Operations, letters: DeadLetters, sessions: Sessions, *,
                 leases_table: str, archive: ArchiveLookup | None = None) -> None:
        self.ops = ops
        self.archive = archive      # expired jobs, for the timeline
        self.letters = letters
        self.sessions = sessions
        self.leases_table = leases_table
        self.router = APIRouter(prefix="/console", route_class=SecureRoute,
                                include_in_schema=False)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(default=True))
        self.env.filters.update(age=age, when=when, mask=mask_text, pretty=pretty,
                                quote=lambda v: quote(str(v), safe=""))

    async def session(self, request: Request) -> tuple[Session, bool]:
        """The request's session, or a new anonymous one (``True``: set its cookie)."""
        found = await self.sessions.current(request)
        return (found, False) if found else (self.sessions.new(signed_in=False), True)

    def render(self, request: Request, session: Session, name: str, *, fresh: bool = False,
               status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(
            csrf=self.sessions.csrf(session), auth=self.sessions.auth,
            signed_in=session.signed_in, actor=str(session.actor), now=time.time(),
            table_names=self.ops.tables, path=request.url.path, **context)
        response = HTMLResponse(html, status_code=status)
        if fresh:
            self.sessions.set_cookie(response, request, session)
        return response

    async def gate(self, request: Request) -> Session | Response:
        """A signed-in session, or a redirect to the sign-in page (GET pages)."""
        session, fresh = await self.session(request)
        if session.signed_in:
            if fresh:  # auth disabled: a session only for CSRF
                return self._with_cookie(RedirectResponse(str(request.url), 303), request,
                                         session)
            return session
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return self._with_cookie(
            RedirectResponse(f"/console/login?next={quote(target, safe='')}", 303),
            request, session if fresh else None)

    def _with_cookie(self, response: Response, request: Request,
                     session: Session | None) -> Response:
        if session is not None:
            self.sessions.set_cookie(response, request, session)
        return response

    async def form(self, request: Request) -> dict[str, list[str]]:
        # Bounded before it is read: shared/edge.py refuses a form past
        # REMITFLOW_HTTP_MAX_FORM_BYTES with 413 while it streams in.
        body = await request.body()
        return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)

    async def post_gate(self, request: Request, *, need_sign_in: bool = True
                        ) -> tuple[Session, dict[str, list[str]]] | Response:
        """Session + form when the CSRF token matches (and signed in), else a 403 page.

        Without a valid session cookie the body is never read: a stranger's POST
        costs the headers only.
        """
        session = await self.sessions.current(request)
        if session is None:
            return await self.forbidden(request, "This form's CSRF token is missing or does not "
                                  "match your session. Reload the page and try again.")
        form = await self.form(request)
        supplied = (form.get("csrf") or [""])[0]
        if session is None or not self.sessions.check_csrf(session, supplied):
            return await self.forbidden(request, "This form's CSRF token is missing or does not "
                                  "match your session. Reload the page and try again.")
        if need_sign_in and not session.signed_in:
            return await self.forbidden(request, "Sign in first.")
        return session, form

    async def forbidden(self, request: Request, message: str) -> HTMLResponse:
        session, fresh = await self.session(request)
        return self.render(request, session, "error.html", fresh=fresh, status=403,
                           title="Refused", message=message)


def first(form: dict[str, list[str]], key: str, default: str = "") -> str:
    return (form.get(key) or [default])[0].strip()
