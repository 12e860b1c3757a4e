"""Webhook endpoint health: streaks recorded per attempt, a dead endpoint disabled, its
notifications waiting visibly, and an operator's enable re-driving them.

Against the emulator over HTTP, with a real local HTTP receiver (``ScriptedServer``).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from services.enrichment.service import build as build_enrichment
from services.notification.endpoints import EndpointHealth, endpoint_id, origin_of
from services.notification.endpoints_api import EndpointGauges
from services.notification.service import build as build_notification
from shared.api import ApiAuth, Heartbeat, create_app
from shared.aws.dynamo import to_item
from shared.metrics import AWS_REQUESTS
from tests.helpers import Env, example, history, job_in, replace_settings, running
from tests.services.notification.support import Reply, ScriptedServer
from tools.stack import builder

pytestmark = pytest.mark.own_stack("runs the notification workers over the whole intake queue")

TOKEN = "endpoint-test-token"
PATH = "/hooks/remittance"
FIRST, SECOND = "REQ-2026-000003", "REQ-2026-000103"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    srv.start()
    yield srv
    srv.stop()


def health(env: Env, **kw: Any) -> EndpointHealth:
    return EndpointHealth(env.clients.dynamodb, env.names.name("endpoints"), **kw)


def calls(operation: str) -> float:
    return sum(s.value for m in AWS_REQUESTS.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels.get("operation") == operation)


async def test_each_attempt_is_one_update_and_a_streak_survives_replicas(env: Env) -> None:
    url = "https://Hooks.Example:8443/p/secret-path?token=x"
    h, other_replica = health(env), health(env)
    reads, updates = calls("GetItem"), calls("UpdateItem")
    first = await h.record(url, ok=False, reason="HTTP 503", now=time.time() - 60)
    await other_replica.record(url, ok=False, reason="timed out after 10s")
    state = await h.record(url, ok=False, reason="HTTP 502 Bad Gateway")
    assert (calls("GetItem"), calls("UpdateItem")) == (reads, updates + 3)   # no read
    assert state.endpoint_id == endpoint_id(url) == first.endpoint_id
    assert state.raw["origin"] == "https://hooks.example:8443"   # no path, no query
    view = state.public()
    assert view["state"] == "failing" and view["consecutive_failures"] == 3
    assert view["failing_seconds"] >= 60                          # the streak's own start
    assert view["last_failure_reason"] == "HTTP 502 Bad Gateway"
    healed = await h.record(url, ok=True)
    assert healed.public()["state"] == "healthy"
    assert healed.raw["consecutive_failures"] == 0 and healed.raw["last_success_at"]
    assert origin_of("http://a.test/x") == "http://a.test:80"


async def test_disabled_once_past_the_limit_and_gauges_report_it(env: Env) -> None:
    url = "https://down.example/hook"
    h = health(env, disable_after_s=30)
    await h.record(url, ok=False, reason="HTTP 503", now=time.time() - 31)
    state = await h.record(url, ok=False, reason="HTTP 503")
    assert state.disabled and "disabled: failing for" in state.raw["history"][0]
    again = await h.record(url, ok=False, reason="HTTP 503")
    assert len(again.raw["history"]) == 1, "disabled once"
    gauges = EndpointGauges(h, interval_s=1, alert_after_s=3600)
    failing = await gauges.run_once()
    assert failing[state.endpoint_id] >= 31
    value = REGISTRY.get_sample_value("remitflow_webhook_endpoint_failing_seconds",
                                      {"endpoint": state.endpoint_id})
    assert value is not None and value >= 31
    assert REGISTRY.get_sample_value("remitflow_webhook_endpoints", {"state": "disabled"}) == 1
    assert REGISTRY.get_sample_value("remitflow_webhook_endpoint_alert_after_seconds") == 3600


@asynccontextmanager
async def notification_api(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    settings = replace_settings(env.settings, api_token=SecretStr(TOKEN))
    async with running(Env(settings, env.clients, env.endpoint), build_notification) as parts:
        async def ready() -> dict[str, Any]:
            return {}

        app = create_app(service="notification", readiness=ready, heartbeat=Heartbeat(),
                         routers=parts.routers, auth=ApiAuth(token=TOKEN))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://notification",
                                     headers={"authorization": f"Bearer {TOKEN}"}) as api:
            yield api


async def test_dead_endpoint_parks_its_notifications_until_enabled(
        env: Env, server: ScriptedServer) -> None:
    env = env.with_settings(endpoint_disable_after_s=2.0,
                            retry_schedules={"webhook": "1s,1s,1s,1s,1s,1s,1s,1s"})
    url = server.on(PATH, *[Reply(503, body=b"down")] * 200)
    payee = next(p for p in json.loads(example("reference-data.json"))["payees"]
                 if p["payee_id"] == "PAYEE-0003")
    await env.clients.dynamodb.put_item(TableName=env.names.payees,
                                        Item=to_item({**payee, "webhook_url": url}))
    eid = endpoint_id(url)
    store = env.store("notifications")
    second = dict(json.loads(example("settled-jpy-wire.json")), request_id=SECOND)
    async with running(env, build_enrichment), notification_api(env) as api, \
            running(env, builder("sweeper")):
        await env.send(example("settled-jpy-wire.json"))
        parked = await job_in(store, FIRST, "FAILED", timeout_s=60)
        assert parked.raw["failure_reason"] == "endpoint_disabled"
        assert parked.raw["waiting_endpoint"] == eid
        assert "waiting for endpoint" in history(parked)
        hits = len(server.hits(PATH))
        # A new notification for the disabled endpoint waits without being sent.
        await env.send(second)
        waiting = await job_in(store, SECOND, "FAILED", timeout_s=60)
        assert waiting.raw["waiting_endpoint"] == eid
        assert len(server.hits(PATH)) == hits, "nothing sent to a disabled endpoint"
        # Visible on the API.
        listed = (await api.get("/v1/endpoints")).json()["endpoints"]
        assert [e["state"] for e in listed if e["endpoint_id"] == eid] == ["disabled"]
        one = (await api.get(f"/v1/endpoints/{eid}")).json()
        assert one["consecutive_failures"] >= 2 and "503" in one["last_failure_reason"]
        assert "secret" not in json.dumps(one) and "/hooks" not in json.dumps(one)
        denied = await api.post(f"/v1/endpoints/{eid}/enable", headers={"authorization": ""})
        assert denied.status_code == 401
        assert (await api.post("/v1/endpoints/ep_0000000000000000/enable")).status_code == 404
        # The receiver is back; an operator enables the endpoint: both are re-driven.
        with server._lock:
            server.script[PATH].clear()
        resp = await api.post(f"/v1/endpoints/{eid}/enable", json={"note": "payee fixed TLS"})
        assert resp.status_code == 200, resp.text
        assert sorted(resp.json()["redriven"]) == [FIRST, SECOND]
        for rid in (FIRST, SECOND):
            sent = await job_in(store, rid, "SENT", timeout_s=60)
            assert "waiting_endpoint" not in sent.raw and "endpoint ep_" in history(sent)
        state = (await api.get(f"/v1/endpoints/{eid}")).json()
    assert state["state"] == "healthy"
    assert any("enabled by api token" in line and "payee fixed TLS" in line
               for line in state["history"])
