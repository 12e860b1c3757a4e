"""FastAPI app factory: health, readiness, metrics, and a service's ``/v1`` routes.

``/healthz`` answers from the event loop's own heartbeat (never AWS), so a slow
dependency never gets a pod killed; ``/readyz`` runs the service's readiness
check; both stay open, like ``/metrics``. Everything else — ``/v1``, ``/docs`` and
``/openapi.json`` — requires ``Authorization: Bearer <REMITFLOW_API_TOKEN>``
(compared in constant time) unless auth was explicitly disabled
(``REMITFLOW_API_AUTH=disabled``), which ``/readyz`` then shows as ``"auth": "disabled"``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cachetools import TTLCache
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from starlette.types import ASGIApp

from shared.edge import Edge, EdgeOptions

#: ``/readyz`` answers within this. Its check calls AWS, and during an outage the SDK
#: retries with back-off for longer; a probe (the chart's times out after 5 s,
#: ``k8s/charts/remitflow/values.yaml``) must get a 503 with the reason, not a timeout
#: of its own.
READINESS_BUDGET_S = 3.0

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


@dataclass(frozen=True)
class ApiAuth:
    """How ``/v1``, ``/docs`` and ``/openapi.json`` are protected.

    Secure by default: either a bearer ``token`` or an explicit ``disabled=True``
    (``REMITFLOW_API_AUTH=disabled``); neither is a programming error.
    """

    token: str | None = field(default=None, repr=False)
    disabled: bool = False
    label: str = "api-token"

    def __post_init__(self) -> None:
        if not self.token and not self.disabled:
            raise ValueError("an API token is required unless auth is explicitly disabled")

    @property
    def mode(self) -> str:
        return "disabled" if self.disabled else "bearer"


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: Request, trusted: Sequence[Network] = ()) -> str:
    """The caller's address; ``X-Forwarded-For`` counts only when sent by a trusted proxy.

    Walks the forwarded chain from the right (the hop nearest to us) and returns the
    first address that is not itself a trusted proxy, so a client cannot pick its own
    rate-limit key by prepending addresses.
    """
    peer = request.client.host if request.client else "-"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = request.headers.get("x-forwarded-for")
    if not forwarded:
        return peer
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


class RateLimiter:
    """Token bucket per principal for ``/v1``: ``rate_per_s`` sustained, ``burst`` peak.

    Protects the job table behind the API from a runaway script; health, readiness
    and metrics are never limited. Buckets are per process (each replica limits on
    its own). Memory is bounded: at most ``max_clients`` buckets, each dropped once
    idle long enough to have refilled (dropping it then changes nothing), the least
    recently used first when full. Every request costs O(1): no sweep over the map.
    A flood of distinct addresses can evict a bucket early, which only hands that
    client a fresh burst; it never slows the service or grows memory.
    """

    def __init__(self, rate_per_s: float, burst: int, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self._buckets: TTLCache[str, tuple[float, float]] = TTLCache(
            maxsize=max_clients, ttl=max(1.0, self.burst / rate_per_s), timer=clock)

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, client: str) -> float:
        """0 when allowed, else the seconds until a request would be."""
        now = self.clock()
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1, now)
        return 0.0


def guard(auth: ApiAuth, limiter: RateLimiter | None,
          trusted: Sequence[Network] = ()) -> Callable[[Request], Awaitable[None]]:
    """Authenticate, then rate-limit by the principal (or the client address).

    Auth runs first so an unauthenticated request never spends anyone's bucket;
    an authenticated caller is limited by its token label wherever it connects from.
    """
    async def check(request: Request) -> None:
        principal = None
        if not auth.disabled:
            header = request.headers.get("authorization", "")
            scheme, _, supplied = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    supplied.encode(), (auth.token or "").encode()):
                raise HTTPException(status_code=401, detail="missing or invalid bearer token",
                                    headers={"WWW-Authenticate": "Bearer"})
            principal = auth.label
        if limiter is None:
            return
        key = principal or client_address(request, trusted)
        wait = limiter.allow(key)
        if wait:
            raise HTTPException(status_code=429, detail="too many requests",
                                headers={"Retry-After": str(max(1, round(wait)))})
    return check


class _EdgeApp(FastAPI):
    """FastAPI with :class:`shared.edge.Edge` outside everything, error handling included."""

    edge = EdgeOptions()

    def build_middleware_stack(self) -> ASGIApp:
        return Edge(super().build_middleware_stack(), self.edge)  # type: ignore[arg-type,return-value]


@dataclass(frozen=True)
class BodyLimits:
    """Request body limits (``REMITFLOW_HTTP_MAX_BODY_BYTES`` / ``..._MAX_FORM_BYTES``)."""

    body_bytes: int = 1024 * 1024
    form_bytes: int = 64 * 1024


def create_app(*, service: str, readiness: Readiness, heartbeat: Heartbeat,
               routers: list[APIRouter], auth: ApiAuth,
               limiter: RateLimiter | None = None,
               trusted_proxies: Sequence[Network] = (),
               pages: list[APIRouter] | None = None,
               page_headers: Mapping[str, str] | None = None,
               limits: BodyLimits = BodyLimits()) -> FastAPI:
    """The service's app; every request first meets :mod:`shared.edge` (body limits,
    bearer check before the body, ``page_headers`` on every page response)."""
    app = _EdgeApp(title=f"remitflow {service}", version="1", docs_url=None,
                   redoc_url=None, openapi_url=None)
    app.edge = EdgeOptions(
        max_body_bytes=limits.body_bytes,
        pages={page.prefix: limits.form_bytes for page in pages or () if page.prefix},
        page_headers=dict(page_headers or {}), token=None if auth.disabled else auth.token)
    state: dict[str, bool] = {"draining": False}
    app.state.flags = state

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The reason and where, never the input: a 100 kB id is not echoed back.
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                    for e in exc.errors()][:10]
        return JSONResponse({"error": "invalid request", "problems": problems},
                            status_code=422)

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
            checks = await asyncio.wait_for(readiness(), timeout=READINESS_BUDGET_S)
        except TimeoutError:
            return JSONResponse({"ready": False, "reason": "readiness check took longer "
                                 f"than {READINESS_BUDGET_S:g} s"}, status_code=503)
        except Exception as exc:
            return JSONResponse({"ready": False, "reason": str(exc)[:300]}, status_code=503)
        ready = all(bool(v) for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks, "auth": auth.mode},
                            status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        # Exemplars (trace ids on latency histograms) exist only in OpenMetrics, which
        # Prometheus asks for when its exemplar storage is on.
        if "application/openmetrics-text" in request.headers.get("accept", ""):
            return Response(openmetrics_latest(REGISTRY),  # type: ignore[no-untyped-call]
                            media_type=OPENMETRICS_CONTENT_TYPE)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    guards = [Depends(guard(auth, limiter, trusted_proxies))]

    @app.get("/openapi.json", include_in_schema=False, dependencies=guards)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guards)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    for router in routers:
        app.include_router(router, prefix="/v1", dependencies=guards)
    # pages carry their own auth (a session cookie); rate-limited by client address
    by_address = [Depends(guard(ApiAuth(disabled=True), limiter, trusted_proxies))]
    for page in pages or ():
        app.include_router(page, dependencies=by_address)
    return app
