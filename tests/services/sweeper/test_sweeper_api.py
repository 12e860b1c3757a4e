"""The sweeper's HTTP API: list by state, manual re-drive (and its 404/409), sweep now, auth."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from services.enrichment.service import build as enrichment
from shared.api import ApiAuth, Heartbeat, create_app
from shared.operations.sweep import Sweeper
from shared.pipeline.jobs import Job, JobStore, Status
from tests.helpers import Env, history, job_in, message, names_of, retrying, running
from tools.stack import builder

pytestmark = pytest.mark.own_stack("re-drives through sweeps that read whole indexes")

sweeper_service = builder("sweeper")

TOKEN = "sweeper-test-token"


@asynccontextmanager
async def api(env: Env, *, send_token: bool = True) -> AsyncIterator[
        tuple[httpx.AsyncClient, Sweeper]]:
    parts = await sweeper_service(env.settings, env.clients)
    sweeper = parts.workers[0]
    assert isinstance(sweeper, Sweeper)

    async def ready() -> dict[str, Any]:
        return {}

    app = create_app(service="sweeper", readiness=ready, heartbeat=Heartbeat(),
                     routers=parts.routers, auth=ApiAuth(token=TOKEN))
    headers = {"Authorization": f"Bearer {TOKEN}"} if send_token else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://sweeper", headers=headers) as client:
        yield client, sweeper


async def failed(store: JobStore, request_id: str, payload: str = "{}") -> Job:
    job = await retrying(store, request_id, attempt=3, payload=payload)
    return await store.transition(job, Status.FAILED)


async def test_api_redrives_a_failed_job_to_completion(env: Env) -> None:
    body = json.dumps(message("REQ-MANUAL-1"))
    await failed(env.store(), "REQ-MANUAL-1", payload=body)
    async with api(env) as (http, _), running(env, enrichment):
        resp = await http.post("/v1/jobs/remittances/REQ-MANUAL-1/redrive")
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "RUNNING" and resp.json()["attempt"] == 4
        job = await job_in(env.store(), "REQ-MANUAL-1", "COMPLETED")
    assert job.attempt == 4 and "redrive by api" in history(job)
    assert await names_of(env, env.names.enrichment_sm) == ["REQ-MANUAL-1-a4"]


async def test_api_redrive_errors(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    store = env.store()
    stale = await failed(store, "REQ-RACE")
    await retrying(store, "REQ-WAITING")
    async with api(env) as (http, sweeper):
        missing = await http.post("/v1/jobs/remittances/REQ-NOPE/redrive")
        assert missing.status_code == 404 and "REQ-NOPE" in missing.json()["error"]
        assert (await http.post("/v1/jobs/bogus/REQ-RACE/redrive")).status_code == 404
        wrong = await http.post("/v1/jobs/remittances/REQ-WAITING/redrive")
        assert wrong.status_code == 409 and "RETRY_PENDING" in wrong.json()["error"]

        await store.update(stale, {"note": "someone else wrote meanwhile"})
        target = sweeper.targets["remittances"]

        async def stale_read(request_id: str, *, consistent: bool = True) -> Job:
            return stale

        monkeypatch.setattr(target.store, "get", stale_read)
        race = await http.post("/v1/jobs/remittances/REQ-RACE/redrive")
        assert race.status_code == 409 and "changed" in race.json()["error"]
    assert (await env.store().require("REQ-RACE")).status is Status.FAILED
    assert await names_of(env, env.names.enrichment_sm) == []


async def test_api_lists_jobs_by_state_page_by_page(env: Env) -> None:
    store = env.store("notifications")
    ids = {f"REQ-LIST-{n}" for n in range(7)}
    for request_id in ids:
        await failed(store, request_id)
    await retrying(store, "REQ-LIST-RETRY", due=int(time.time()) + 600)
    async with api(env) as (http, _):
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params = {"table": "notifications", "state": "failed", "limit": "3"}
            if cursor:
                params["cursor"] = cursor
            resp = await http.get("/v1/jobs", params=params)
            assert resp.status_code == 200, resp.text
            page = resp.json()
            assert all(j["status"] == "FAILED" and j["failed_at"] for j in page["jobs"])
            seen += [j["request_id"] for j in page["jobs"]]
            pages += 1
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(seen) == sorted(ids) and pages >= 3
        retry = (await http.get("/v1/jobs", params={"table": "notifications",
                                                    "state": "retry"})).json()
        assert [j["request_id"] for j in retry["jobs"]] == ["REQ-LIST-RETRY"]
        assert retry["jobs"][0]["next_attempt_at"] > time.time()
        assert retry["next_cursor"] is None
        empty = (await http.get("/v1/jobs", params={"table": "remittances",
                                                    "state": "running"})).json()
        assert empty == {"jobs": [], "next_cursor": None}
        for bad in ({"state": "done"}, {"table": "payees"}, {"limit": "0"},
                    {"cursor": "garbage!"}):
            resp = await http.get("/v1/jobs", params=bad)
            assert resp.status_code == 400 and "error" in resp.json(), bad


async def test_api_sweep_now_and_token(env: Env) -> None:
    await retrying(env.store(), "REQ-SWEEP-NOW")
    async with api(env, send_token=False) as (http, _):
        assert (await http.post("/v1/sweep")).status_code == 401
        assert (await http.get("/v1/jobs")).status_code == 401
        bad = await http.post("/v1/sweep", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json() == {"error": "missing or invalid bearer token"}
        auth = {"Authorization": f"Bearer {TOKEN}"}
        resp = await http.post("/v1/sweep", headers=auth)
        assert resp.status_code == 200, resp.text
        report = resp.json()
        assert report["swept"] and report["tables"]["remittances"]["redriven"] == 1
        assert report["items_read"] >= 1
        assert (await http.get("/metrics")).status_code == 200
    assert (await env.store().require("REQ-SWEEP-NOW")).attempt == 2
