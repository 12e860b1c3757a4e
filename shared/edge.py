"""Limits at the edge: what every request meets before any route reads it.

One pure ASGI middleware, outermost in every service's app (``docs/runbook.md``,
"Request limits"), guarantees:

- **A body is bounded before it is buffered.** A ``content-length`` above the
  limit is answered 413 without reading a byte of the body; a body without one
  (chunked) is counted as it streams in and the request is refused with 413 the
  moment it passes the limit, so neither FastAPI's JSON parsing nor a form read
  ever holds more than the limit. Pages (the console) have their own, smaller
  limit; everything else gets ``REMITFLOW_HTTP_MAX_BODY_BYTES``.
- **Authentication before the body** where the route allows it: a protected
  prefix (``/v1``) without the right bearer token is answered 401 before its
  body is read (the route's own check still runs behind it).
- **Pages' headers on every answer,** errors included (404, 405, 413, 422, an
  unhandled 500): the middleware sits outside Starlette's error handling, so a
  page's security headers cannot be skipped by an exception.

The uvicorn server in front of it bounds the request line and headers (h11's
16 KiB incomplete-event limit); the rest of the body of a refused request is read
and discarded by the server, never buffered.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` the moment a streamed body passes its limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body larger than {limit} bytes")


@dataclass(frozen=True)
class EdgeOptions:
    """What the edge enforces; built once from settings by :func:`shared.api.create_app`.

    Attributes:
        max_body_bytes: the limit for any path not under a page prefix.
        pages: path prefix -> its own body limit (the console's forms).
        page_headers: headers added to every response under a page prefix.
        protected: prefixes that need ``Authorization: Bearer <token>``.
        token: the bearer token (``None``: auth disabled, nothing is checked here).
    """

    max_body_bytes: int = 1024 * 1024
    pages: Mapping[str, int] = field(default_factory=dict)
    page_headers: Mapping[str, str] = field(default_factory=dict)
    protected: Sequence[str] = ("/v1", "/docs", "/openapi.json")
    token: str | None = field(default=None, repr=False)

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.pages.items():
            if _under(path, prefix):
                return limit
        return self.max_body_bytes

    def is_page(self, path: str) -> bool:
        return any(_under(path, prefix) for prefix in self.pages)

    def needs_token(self, path: str) -> bool:
        return self.token is not None and any(_under(path, p) for p in self.protected)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def bearer_ok(scope: Scope, token: str) -> bool:
    """The ``Authorization`` header carries ``token`` (compared as bytes, in constant time)."""
    scheme, _, supplied = (_header(scope, b"authorization") or b"").partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(supplied, token.encode())


class Edge:
    """The ASGI middleware (see the module docstring for its guarantees)."""

    def __init__(self, app: ASGIApp, options: EdgeOptions) -> None:
        self.app = app
        self.options = options

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        send = self._with_page_headers(send) if self.options.is_page(path) else send
        limit = self.options.limit_for(path)
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                await _answer(send, 400, "invalid content-length")
                return
            if int(length) > limit:
                await _answer(send, 413, f"request body larger than {limit} bytes",
                              {"connection": "close"})
                return
        token = self.options.token
        if token is not None and self.options.needs_token(path) and not bearer_ok(scope, token):
            await _answer(send, 401, "missing or invalid bearer token",
                          {"www-authenticate": "Bearer"})
            return
        started = False
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message: Message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except BodyTooLarge as exc:  # a route that let it through its own handling
            if started:
                raise
            await _answer(send, 413, str(exc.detail), {"connection": "close"})

    def _with_page_headers(self, send: Send) -> Send:
        extra = [(k.lower().encode(), v.encode()) for k, v in self.options.page_headers.items()]
        names = {k for k, _ in extra}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in names]
                message = {**message, "headers": kept + extra}
            await send(message)

        return send_with_headers


async def _answer(send: Send, status: int, error: str,
                  headers: Mapping[str, str] | None = None) -> None:
    body = json.dumps({"error": error}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
