"""A real service process: HTTP routes, bearer auth, and a clean SIGTERM."""

from __future__ import annotations

import re
import signal
import time

import httpx
import pytest

from shared.aws.clients import AwsClients
from tests.helpers import Env, eventually, service_process
from tools.stack import bootstrap_stack, file_drops

pytestmark = pytest.mark.own_stack("its service process takes every message on the intake queue")

TOKEN = "s3cret-test-token"


async def answers(http: httpx.AsyncClient, path: str, status: int) -> bool:
    """True once ``path`` answers ``status`` (False while the port is not open yet)."""
    try:
        return (await http.get(path)).status_code == status
    except httpx.TransportError:
        return False


def gc_passes(metrics: str) -> float:
    """The process's youngest-generation collector passes (prometheus_client's own)."""
    found = re.search(r'^python_gc_collections_total\{generation="0"\} (\S+)$', metrics, re.M)
    assert found, "python_gc_collections_total missing from /metrics"
    return float(found.group(1))


async def test_enrichment_process_serves_and_stops_cleanly(env: Env) -> None:
    with service_process(env, "enrichment", capture=True,
                         REMITFLOW_API_TOKEN=TOKEN) as (url, proc):
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            await eventually(lambda: answers(http, "/readyz", 200), what="/readyz 200")
            at_ready = gc_passes((await http.get("/metrics")).text)
            assert (await http.get("/healthz")).json()["status"] == "ok"
            await env.send({"schema_version": "1", "request_id": "REQ-PROC-1",
                            "partner": "TOKYOBANK", "status": "SETTLED",
                            "payment_method": "WIRE", "amount": "150000", "currency": "JPY",
                            "payee_id": "PAYEE-0003", "invoice_ids": ["INV-3001"],
                            "occurred_at": "2026-11-25T01:30:00Z"})
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert (await http.get("/v1/remittances/REQ-PROC-1")).status_code == 401
            bad = await http.get("/v1/remittances/REQ-PROC-1",
                                 headers={"Authorization": "Bearer nope"})
            assert bad.status_code == 401 and bad.json() == {
                "error": "missing or invalid bearer token"}

            async def completed() -> dict[str, object] | None:
                resp = await http.get("/v1/remittances/REQ-PROC-1", headers=auth)
                body: dict[str, object] = resp.json()
                return body if resp.status_code == 200 and body["status"] == "COMPLETED" \
                    else None

            job = await eventually(completed, what="REQ-PROC-1 COMPLETED over the API")
            for key in ("request_id", "status", "attempt", "version", "execution_arn",
                        "created_at", "updated_at", "last_error"):
                assert key in job
            assert job["last_error"] is None and job["attempt"] == 1
            assert str(job["execution_arn"]).endswith(":execution:"
                                                      f"{env.names.enrichment_sm}:REQ-PROC-1-a1")
            missing = await http.get("/v1/remittances/REQ-NOPE", headers=auth)
            assert missing.status_code == 404 and "error" in missing.json()
            metrics = (await http.get("/metrics")).text
            assert 'remitflow_intake_messages_total{outcome="stored"' in metrics
            assert "remitflow_aws_requests_total{" in metrics
            # Start-up ran with the garbage collector paused (shared/startup.py); the
            # running service is collected again: more passes than when it was ready.
            assert gc_passes(metrics) > at_ready, "the collector was resumed"

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - started < 15
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert '"event": "service.stopped"' in out
        assert TOKEN not in out


async def test_bootstrap_twice_changes_nothing(env: Env) -> None:
    async with AwsClients(env.settings) as clients:
        drops = file_drops(env.settings)
        first = await bootstrap_stack(env.settings, clients)
        tables = await clients.dynamodb.describe_table(TableName=env.names.remittances)
        second = await bootstrap_stack(env.settings, clients)
        again = await clients.dynamodb.describe_table(TableName=env.names.remittances)
        notify = await clients.s3.get_bucket_notification_configuration(
            Bucket=drops[0].bucket_name(env.settings.prefix))
    assert first == second
    assert env.names.partner_files_queue in first
    assert len(notify["QueueConfigurations"]) == 1
    assert {g["IndexName"] for g in again["Table"]["GlobalSecondaryIndexes"]} == {
        "retry-index", "failed-index", "running-index", "handoff-index"}
    assert tables["Table"]["LatestStreamArn"] == again["Table"]["LatestStreamArn"]
    assert again["Table"]["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"


@pytest.mark.parametrize("service", ["notification", "sweeper"])
async def test_sigterm_drains_and_exits_zero(env: Env, service: str) -> None:
    with service_process(env, service, capture=True) as (url, proc):
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            await eventually(lambda: answers(http, "/readyz", 200), what=f"{service} ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        out = proc.stdout.read().decode() if proc.stdout else ""
    assert '"event": "service.stopping"' in out and '"event": "service.stopped"' in out
