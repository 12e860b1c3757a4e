"""FastAPI app factory: health, readiness, metrics, and a service's ``/v1`` routes.

``/healthz`` answers from the event loop's own heartbeat (never AWS), so a slow
dependency never gets a pod killed; ``/readyz`` runs the service's readiness
check. ``/v1`` requires ``Authorization: Bearer <REMITFLOW_API_TOKEN>`` when the
token is set, compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Readiness = Callable[[], Awaitable[dict[str, Any]]]


class Heartbeat:
    """Updated by a task on the loop; stale means the loop is stuck."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.last = time.monotonic()
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except TimeoutError:
                continue

    def age_s(self) -> float:
        return time.monotonic() - self.last


class RateLimiter:
    """Token bucket per client address for ``/v1``: ``rate_per_s`` sustained, ``burst`` peak.

    Protects the job table behind the API from a runaway script; health, readiness
    and metrics are never limited. Buckets are per process (each replica limits on
    its own) and idle buckets are dropped so the map stays small.
    """

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str, now: float | None = None) -> float:
        """0 when allowed, else the seconds until a request would be."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self._buckets) > 10_000:
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1, now)
        return 0.0


def rate_limit(limiter: RateLimiter | None) -> Callable[[Request], Awaitable[None]]:
    async def check(request: Request) -> None:
        if limiter is None:
            return
        client = request.client.host if request.client else "-"
        wait = limiter.allow(client)
        if wait:
            raise HTTPException(status_code=429, detail="too many requests",
                                headers={"Retry-After": str(max(1, round(wait)))})
    return check


def bearer_auth(token: str | None) -> Callable[[Request], Awaitable[None]]:
    async def check(request: Request) -> None:
        if not token:
            return
        header = request.headers.get("authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(supplied.encode(),
                                                                 token.encode()):
            raise HTTPException(status_code=401, detail="missing or invalid bearer token",
                                headers={"WWW-Authenticate": "Bearer"})
    return check


def create_app(*, service: str, readiness: Readiness, heartbeat: Heartbeat,
               routers: list[APIRouter], token: str | None,
               limiter: RateLimiter | None = None,
               pages: list[APIRouter] | None = None) -> FastAPI:
    app = FastAPI(title=f"remitflow {service}", version="1", docs_url="/docs",
                  redoc_url=None)
    state: dict[str, bool] = {"draining": False}
    app.state.flags = state

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        age = heartbeat.age_s()
        ok = age < 10
        return JSONResponse({"status": "ok" if ok else "stuck", "loop_heartbeat_age_s":
                             round(age, 3)}, status_code=200 if ok else 503)

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        if state["draining"]:
            return JSONResponse({"ready": False, "reason": "shutting down"}, status_code=503)
        try:
            checks = await asyncio.wait_for(readiness(), timeout=5)
        except Exception as exc:
            return JSONResponse({"ready": False, "reason": str(exc)[:300]}, status_code=503)
        ready = all(bool(v) for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready
                            else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    guards = [Depends(rate_limit(limiter)), Depends(bearer_auth(token))]
    for router in routers:
        app.include_router(router, prefix="/v1", dependencies=guards)
    for page in pages or ():  # own auth (session cookie), rate-limited like /v1
        app.include_router(page, dependencies=[Depends(rate_limit(limiter))])
    return app
