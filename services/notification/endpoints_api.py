"""Endpoint health on the notification service: ``/v1/endpoints``, metrics, re-enabling.

Routes (behind the API token like every ``/v1`` route):

* ``GET /v1/endpoints``: every endpoint, failing ones first;
* ``GET /v1/endpoints/{endpoint_id}``: one endpoint, with its history;
* ``POST /v1/endpoints/{endpoint_id}/enable`` ``{"note": "..."}``: an operator
  re-enables a disabled endpoint (recorded with the acting token and the note) and
  the notifications that waited for it are re-driven, each as a fresh attempt.

Notifications waiting for a disabled endpoint are ``FAILED`` with
``failure_reason = endpoint_disabled`` and ``waiting_endpoint = <endpoint id>``: the
sweeper never re-drives ``FAILED`` jobs by itself, so they wait, visible in
``/v1/jobs?state=failed`` and the console. Enabling re-drives them by reading the
failed index filtered on ``waiting_endpoint`` (its cost grows with the failed
backlog, never with the table). Enabling is idempotent: if the process stops
half-way, enabling again re-drives the rest.

Metrics (:class:`EndpointGauges`, every ``endpoint_metrics_interval_s``, from the
table, so every replica reports the same numbers): the failing seconds of at most
:data:`TOP_FAILING` endpoints (label: the hashed id, bounded cardinality), the count of
failing and of disabled endpoints, and the alert threshold as a gauge so the alert
in ``deploy/prometheus/alerts.yml`` follows ``REMITFLOW_ENDPOINT_ALERT_AFTER_S``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from prometheus_client import Gauge

from services.notification.endpoints import EndpointHealth
from shared.logs import get_logger
from shared.pipeline.jobs import JobStore, VersionConflict
from shared.pipeline.starter import WorkflowStarter
from shared.worker import Lifecycle, ticker

log = get_logger(__name__)
TOP_FAILING = 20
WAITING = "waiting_endpoint"
REASON = "endpoint_disabled"
_ID = re.compile(r"^ep_[0-9a-f]{16}$")

FAILING_SECONDS = Gauge(
    "remitflow_webhook_endpoint_failing_seconds",
    "Seconds since a webhook endpoint's current failure streak began (longest "
    f"{TOP_FAILING}; label: hashed endpoint id).", ["endpoint"])
ENDPOINTS = Gauge("remitflow_webhook_endpoints", "Webhook endpoints by health state.",
                  ["state"])
LONGEST = Gauge("remitflow_webhook_endpoint_longest_failing_seconds",
                "The longest current failure streak of any webhook endpoint.")
ALERT_AFTER = Gauge("remitflow_webhook_endpoint_alert_after_seconds",
                    "REMITFLOW_ENDPOINT_ALERT_AFTER_S: the alert's threshold.")


class EndpointGauges(Lifecycle):
    """Publishes endpoint health from the table; a failed read keeps the last values."""

    name = "endpoint_gauges"
    healthy = True

    def __init__(self, health: EndpointHealth, *, interval_s: float, alert_after_s: float) -> None:
        super().__init__()
        self.health, self.interval_s = health, interval_s
        ALERT_AFTER.set(alert_after_s)

    async def run(self) -> None:
        self._begin()
        async for _ in ticker(self.interval_s, self._stop):
            try:
                await self.run_once()
            except Exception as exc:
                log.warning("endpoints.gauges_failed", error=repr(exc))

    async def run_once(self) -> dict[str, float]:
        states = await self.health.list()
        failing = sorted((s for s in states if s.raw.get("first_failure_at") is not None),
                         key=lambda s: s.failing_s, reverse=True)
        FAILING_SECONDS.clear()
        for state in failing[:TOP_FAILING]:
            FAILING_SECONDS.labels(endpoint=state.endpoint_id).set(state.failing_s)
        disabled = sum(1 for s in states if s.disabled)
        ENDPOINTS.labels(state="failing").set(len(failing))
        ENDPOINTS.labels(state="disabled").set(disabled)
        ENDPOINTS.labels(state="healthy").set(len(states) - len(failing))
        LONGEST.set(failing[0].failing_s if failing else 0)
        return {s.endpoint_id: s.failing_s for s in failing}


async def redrive_waiting(store: JobStore, starter: WorkflowStarter, eid: str,
                          by: str) -> list[str]:
    """Re-drive every notification parked for ``eid``; returns their request ids."""
    done: list[str] = []
    cursor: dict[str, Any] | None = None
    while True:
        jobs, cursor, _ = await store.query_index("failed", where={WAITING: eid},
                                                  cursor=cursor, limit=100)
        for job in jobs:
            try:
                cleared = await store.update(job, {}, remove=(WAITING, "failure_reason"),
                                             history=f"endpoint {eid} enabled by {by}")
                running = await starter.begin(cleared, history="re-driven: endpoint enabled, "
                                              f"attempt {cleared.attempt + 1}")
            except VersionConflict:
                continue    # someone else moved it (an operator's re-drive): theirs now
            if running is not None:
                done.append(job.request_id)
        if cursor is None:
            return done


def endpoints_router(health: EndpointHealth, store: JobStore, starter: WorkflowStarter,
                     actor: str) -> APIRouter:
    router = APIRouter()

    def check(eid: str) -> None:
        if not _ID.match(eid):
            raise HTTPException(status_code=400, detail="endpoint id is ep_ + 16 hex digits")

    @router.get("/endpoints")
    async def list_endpoints() -> dict[str, Any]:
        states = sorted(await health.list(), key=lambda s: (-s.failing_s, s.endpoint_id))
        views = [s.public() for s in states]
        for view in views:
            view.pop("history")
        return {"endpoints": views}

    @router.get("/endpoints/{endpoint_id}")
    async def get_endpoint(endpoint_id: str) -> dict[str, Any]:
        check(endpoint_id)
        state = await health.get(endpoint_id, consistent=True)
        if state is None:
            raise HTTPException(status_code=404, detail=f"no endpoint {endpoint_id}")
        return state.public()

    @router.post("/endpoints/{endpoint_id}/enable")
    async def enable(endpoint_id: str,
                     body: Annotated[dict[str, Any] | None, Body()] = None) -> dict[str, Any]:
        check(endpoint_id)
        note = str((body or {}).get("note") or "")
        state = await health.enable(endpoint_id, by=actor, note=note)
        if state is None:
            raise HTTPException(status_code=404, detail=f"no endpoint {endpoint_id}")
        redriven = await redrive_waiting(store, starter, endpoint_id, actor)
        log.warning("endpoints.enabled", endpoint=endpoint_id, by=actor, redriven=len(redriven))
        return {**state.public(), "redriven": redriven}

    return router
