"""The real Prometheus scrapes every declared service running on the emulator.

Runs the Debian ``prometheus`` binary (installed by ``make check-deploy``) with the
project's alert rules, and asserts through its HTTP API that every target is up,
the key series exist and the rules loaded. Skipped where the binary is missing,
unless ``REMITFLOW_REQUIRE_PROMETHEUS=1`` (CI sets it) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Env, eventually, free_port
from tools.stack import PORTS

ROOT = Path(__file__).resolve().parents[2]
SERVICES = tuple(PORTS)


def _binary() -> str:
    found = shutil.which("prometheus")
    if found:
        return found
    if os.environ.get("REMITFLOW_REQUIRE_PROMETHEUS") == "1":
        pytest.fail("prometheus binary not found (make check-deploy installs it)")
    pytest.skip("prometheus binary not installed (make check-deploy installs it)")


@contextmanager
def _spawn(args: list[str],
           env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_prometheus_scrapes_every_service(env: Env, tmp_path: Path) -> None:
    binary = _binary()
    ports = {s: free_port() for s in SERVICES}
    prom_port = free_port()
    targets = "\n".join(
        f"      - targets: ['127.0.0.1:{port}']\n        labels: {{component: {service}}}"
        for service, port in ports.items())
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {ROOT / "deploy/prometheus/alerts.yml"}
scrape_configs:
  - job_name: remitflow
    static_configs:
{targets}
""")
    with ExitStack() as stack:
        for service, port in ports.items():
            proc_env = {**os.environ, "REMITFLOW_PREFIX": env.settings.prefix,
                        "REMITFLOW_HTTP_PORT": str(port), "REMITFLOW_HTTP_HOST": "127.0.0.1",
                        "REMITFLOW_RECEIVE_WAIT_S": "1", "REMITFLOW_SWEEPER_INTERVAL_S": "1"}
            stack.enter_context(_spawn(
                [sys.executable, "-m", "tools.cli", "run", service], proc_env))
        stack.enter_context(_spawn(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"]))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{prom_port}",
                                     timeout=5) as http:

            async def all_up() -> list[Any] | None:
                try:
                    active = (await http.get("/api/v1/targets")).json()["data"]["activeTargets"]
                except (httpx.TransportError, KeyError, ValueError):
                    return None
                up = [t for t in active if t["health"] == "up"]
                return up if len(up) == len(SERVICES) else None

            up = await eventually(all_up, timeout_s=60, what="three targets up")
            assert {t["labels"]["component"] for t in up} == set(SERVICES)

            async def series(query: str) -> list[Any] | None:
                resp = (await http.get("/api/v1/query", params={"query": query})).json()
                return resp["data"]["result"] or None

            calls = await eventually(lambda: series("sum by (component) "
                                                    "(remitflow_aws_requests_total)"),
                                     timeout_s=30, what="AWS call counters")
            assert {r["metric"]["component"] for r in calls} == set(SERVICES)
            await eventually(lambda: series("remitflow_sweeper_last_success_timestamp_seconds"
                                            " > 0"), timeout_s=30, what="a completed sweep")
            await eventually(lambda: series("remitflow_queue_messages"), timeout_s=30,
                             what="queue depth gauges")
            rules = (await http.get("/api/v1/rules")).json()["data"]["groups"]
            names = {r["name"] for g in rules for r in g["rules"]}
            assert len(names) >= 5

