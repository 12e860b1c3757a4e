"""One entry point per process owns the lifetime (``remitflow run SERVICE``).

It builds settings and clients, then runs the HTTP server and the service's
workers under one ``asyncio.TaskGroup``: if any of them dies, the process exits
non-zero and the orchestrator restarts it (no half-alive pods). Shutdown is two
phases: on the first SIGTERM/SIGINT readiness goes false and every worker stops
taking work and finishes or hands back what it holds; after ``shutdown_grace_s``
(or a second signal) whatever is left is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import uvicorn
from fastapi import APIRouter
from prometheus_client import REGISTRY

from shared.api import ApiAuth, BodyLimits, Heartbeat, RateLimiter, Readiness, create_app
from shared.aws.clients import AwsClients
from shared.logs import configure_logging, get_logger
from shared.pipeline.faults import arm
from shared.settings import Settings
from shared.startup import resume_collector
from shared.tracing import configure_tracing, instrument_app, shutdown_tracing
from shared.worker import Worker

log = get_logger(__name__)


@dataclass
class ServiceParts:
    """What a service's ``build`` hands the entry point.

    ``closers`` release what the build opened beyond the AWS clients (an HTTP
    client pool, say); they run after every worker has stopped, even on error.
    """

    workers: list[Worker]
    routers: list[APIRouter] = field(default_factory=list)
    readiness: Readiness | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Mounted at the root without the bearer check: they authenticate themselves
    # (the sweeper's /console, with a session cookie).
    pages: list[APIRouter] = field(default_factory=list)
    # Added to every response under the pages' prefixes, errors included (shared/edge.py).
    page_headers: dict[str, str] = field(default_factory=dict)


Builder = Callable[[Settings, AwsClients], Awaitable[ServiceParts]]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the entry point owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WorkerStopped(RuntimeError):
    """A worker returned while nobody asked it to stop."""


def api_auth(settings: Settings) -> ApiAuth:
    """The API's auth from settings; refuses (exits) without a token unless disabled."""
    settings.api.require_auth()
    if settings.api.token is None:
        log.warning("api.auth_disabled", detail="REMITFLOW_API_AUTH=disabled: /v1, /docs and "
                    "/openapi.json are served without authentication")
        return ApiAuth(disabled=True)
    return ApiAuth(token=settings.api.token.get_secret_value())


async def serve(service: str, settings: Settings, build: Builder, *, port: int) -> int:
    """Run one service until SIGTERM/SIGINT; returns the exit code (raises if a part died)."""
    configure_logging(settings.log.level, settings.log.format, service=service,
                      libraries_level=settings.log.level_libraries)
    auth = api_auth(settings)
    arm(settings.faults.point, settings.faults.after)   # dev/test crash point, unset in production
    started = time.monotonic()
    if configure_tracing(service):  # OTEL_TRACES_EXPORTER etc.; off by default
        log.info("tracing.enabled", exporter=os.environ.get("OTEL_TRACES_EXPORTER"))
    try:
        async with AwsClients(settings) as clients:
            parts = await build(settings, clients)
            try:
                process = _Process(service, settings, parts, auth, settings.port_or(port))
                resume_collector()   # built: what start-up made is frozen (shared/startup.py)
                await process.run()
            finally:
                for close in parts.closers:
                    await close()
    finally:
        shutdown_tracing()  # flush buffered spans
    log.info("service.stopped", uptime_s=round(time.monotonic() - started, 1),
             **_counters())
    return 0


class _Process:
    """The lifetime of one service process, in the order things happen.

    1. :meth:`run` starts every worker, the HTTP server and the loop heartbeat in
       one ``TaskGroup``: any of them ending unasked ends the process.
    2. The first signal (:meth:`on_signal`) makes readiness false, asks every worker
       to stop and arms a timer of ``shutdown_grace_s``.
    3. :meth:`finish` waits for the workers, then stops the server and heartbeat.
    4. A second signal, or the timer, cancels what is still running.
    """

    def __init__(self, service: str, settings: Settings, parts: ServiceParts, auth: ApiAuth,
                 port: int) -> None:
        self.service, self.settings, self.parts, self.port = service, settings, parts, port
        self.heartbeat = Heartbeat()
        self.stopped = asyncio.Event()    # ends the heartbeat
        self.stopping = asyncio.Event()   # the first signal came
        self.signals = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.app = create_app(
            service=service, readiness=self.ready, heartbeat=self.heartbeat,
            routers=parts.routers, auth=auth, pages=parts.pages,
            page_headers=parts.page_headers,
            limits=BodyLimits(settings.http.max_body_bytes, settings.http.max_form_bytes),
            limiter=RateLimiter(settings.api.rate_per_s, settings.api.burst,
                                max_clients=settings.api.max_clients),
            trusted_proxies=settings.api.proxy_networks)
        instrument_app(self.app)  # server spans for /v1 and /console, when tracing is on
        self.server = _Server(uvicorn.Config(self.app, host=settings.http.host, port=port,
                                             log_config=None, access_log=False,
                                             lifespan="off"))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.on_signal, sig)
        log.info("service.started", port=self.port, prefix=self.settings.prefix,
                 workers=[w.name for w in self.parts.workers])
        async with asyncio.TaskGroup() as group:
            self.tasks.extend(group.create_task(self.guarded(w), name=w.name)
                              for w in self.parts.workers)
            group.create_task(self.heartbeat.run(self.stopped))
            group.create_task(self.run_server())
            group.create_task(self.finish())

    async def ready(self) -> dict[str, object]:
        checks: dict[str, object] = {w.name: w.healthy for w in self.parts.workers}
        if self.parts.readiness is not None:
            checks.update(await self.parts.readiness())
        return checks

    def on_signal(self, signum: int) -> None:
        self.signals += 1
        if self.signals > 1:
            self.cancel_rest()
            return
        log.info("service.stopping", signal=signal.Signals(signum).name,
                 grace_s=self.settings.shutdown_grace_s)
        self.app.state.flags["draining"] = True
        self.stopping.set()
        for worker in self.parts.workers:
            worker.shutdown()
        asyncio.get_running_loop().call_later(self.settings.shutdown_grace_s, self.cancel_rest)

    def cancel_rest(self) -> None:
        for task in self.tasks:
            if not task.done():
                log.warning("service.cancelling", task=task.get_name())
                task.cancel()

    async def guarded(self, worker: Worker) -> None:
        await worker.run()
        if not self.signals:
            raise WorkerStopped(f"{worker.name} stopped unexpectedly")

    async def run_server(self) -> None:
        await self.server.serve()
        if not self.signals:
            raise WorkerStopped("HTTP server stopped (port in use?)")

    async def finish(self) -> None:
        await self.stopping.wait()
        if self.tasks:
            await asyncio.wait(self.tasks)
        self.server.should_exit = True
        self.stopped.set()


def _counters() -> dict[str, float]:
    """The shutdown summary line: the same counters /metrics shows, summed per name."""
    out: dict[str, float] = {}
    for metric in REGISTRY.collect():
        if metric.type != "counter" or not metric.name.startswith("remitflow_"):
            continue
        total = sum(s.value for s in metric.samples if s.name.endswith("_total"))
        out[metric.name] = total
    return out
