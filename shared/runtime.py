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
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import uvicorn
from fastapi import APIRouter
from prometheus_client import REGISTRY

from shared.api import ApiAuth, Heartbeat, RateLimiter, Readiness, create_app
from shared.aws.clients import AwsClients
from shared.logs import configure_logging, get_logger
from shared.settings import Settings
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
    settings.require_api_auth()
    if settings.api_token is None:
        log.warning("api.auth_disabled", detail="REMITFLOW_API_AUTH=disabled: /v1, /docs and "
                    "/openapi.json are served without authentication")
        return ApiAuth(disabled=True)
    return ApiAuth(token=settings.api_token.get_secret_value())


async def serve(service: str, settings: Settings, build: Builder, *, port: int) -> int:
    configure_logging(settings.log_level, settings.log_format, service=service,
                      libraries_level=settings.log_level_libraries)
    settings.require_api_auth()
    port = settings.port_or(port)
    started = time.monotonic()
    async with AwsClients(settings) as clients:
        parts = await build(settings, clients)
        heartbeat = Heartbeat()
        stop = asyncio.Event()

        async def ready() -> dict[str, object]:
            checks: dict[str, object] = {f"{w.name}": w.healthy
                                         for w in parts.workers}
            if parts.readiness is not None:
                checks.update(await parts.readiness())
            return checks

        app = create_app(service=service, readiness=ready, heartbeat=heartbeat,
                         routers=parts.routers, auth=api_auth(settings), pages=parts.pages,
                         limiter=RateLimiter(settings.api_rate_per_s, settings.api_burst,
                                             max_clients=settings.api_max_clients),
                         trusted_proxies=settings.trusted_proxies)
        server = _Server(uvicorn.Config(app, host=settings.http_host,
                                        port=port, log_config=None,
                                        access_log=False, lifespan="off"))
        tasks: list[asyncio.Task[None]] = []
        stopping = asyncio.Event()
        signals = 0

        def on_signal(signum: int) -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                log.info("service.stopping", signal=signal.Signals(signum).name,
                         grace_s=settings.shutdown_grace_s)
                app.state.flags["draining"] = True
                stopping.set()
                for worker in parts.workers:
                    worker.shutdown()
                asyncio.get_running_loop().call_later(settings.shutdown_grace_s, cancel_rest)
            else:
                cancel_rest()

        def cancel_rest() -> None:
            for task in tasks:
                if not task.done():
                    log.warning("service.cancelling", task=task.get_name())
                    task.cancel()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)

        async def guarded(worker: Worker) -> None:
            await worker.run()
            if not signals:
                raise WorkerStopped(f"{worker.name} stopped unexpectedly")

        log.info("service.started", port=port, prefix=settings.prefix,
                 workers=[w.name for w in parts.workers])
        async def run_server() -> None:
            await server.serve()
            if not signals:
                raise WorkerStopped("HTTP server stopped (port in use?)")

        async def finish() -> None:
            await stopping.wait()
            if tasks:
                await asyncio.wait(tasks)
            server.should_exit = True
            stop.set()

        try:
            async with asyncio.TaskGroup() as group:
                tasks.extend(group.create_task(guarded(w), name=w.name) for w in parts.workers)
                group.create_task(heartbeat.run(stop))
                group.create_task(run_server())
                group.create_task(finish())
        finally:
            for close in parts.closers:
                await close()
    log.info("service.stopped", uptime_s=round(time.monotonic() - started, 1),
             **_counters())
    return 0


def _counters() -> dict[str, float]:
    """The shutdown summary line: the same counters /metrics shows, summed per name."""
    out: dict[str, float] = {}
    for metric in REGISTRY.collect():
        if metric.type != "counter" or not metric.name.startswith("remitflow_"):
            continue
        total = sum(s.value for s in metric.samples if s.name.endswith("_total"))
        out[metric.name] = total
    return out
