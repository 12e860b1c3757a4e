"""``/readyz`` answers within its budget whatever its check does, so a probe reads a 503
and its reason, never a timeout of its own (an AWS outage: the SDK retries with
back-off for longer than a probe waits)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import yaml

from shared import api
from shared.api import ApiAuth, Heartbeat, create_app

VALUES = Path(__file__).resolve().parents[2] / "k8s" / "charts" / "remitflow" / "values.yaml"


def _probe_timeout_s() -> float:
    return float(yaml.safe_load(VALUES.read_text())["probes"]["readiness"]["timeoutSeconds"])


@pytest.mark.unit
def test_the_budget_is_inside_the_charts_probe_timeout() -> None:
    assert _probe_timeout_s() - 1 > api.READINESS_BUDGET_S, "leave the answer a second"


@pytest.mark.unit
async def test_a_check_that_hangs_is_a_503_with_its_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "READINESS_BUDGET_S", 0.2)
    started = asyncio.Event()

    async def hangs() -> dict[str, object]:
        started.set()
        await asyncio.sleep(3600)         # DescribeTable retrying against an outage
        return {"aws": True}

    app = create_app(service="t", readiness=hangs, heartbeat=Heartbeat(), routers=[],
                     auth=ApiAuth(disabled=True))
    # the client waits no longer than the chart's probe does
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                 timeout=_probe_timeout_s()) as http:
        resp = await http.get("/readyz")
    assert started.is_set()
    assert resp.status_code == 503
    assert resp.json() == {"ready": False,
                           "reason": "readiness check took longer than 0.2 s"}
