"""Fixtures module: the three services as real OS processes under one prefix, and their
``/metrics`` parsed into the AWS calls each one made (for the IAM and stack tests)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx

from tests.helpers import eventually, free_port

SERVICES = ("enrichment", "notification", "sweeper")
_AWS_LABEL = re.compile(
    r'^remitflow_aws_requests_total\{operation="([^"]+)",service="([^"]+)"\}\s+(\S+)', re.M)

# One settled payment that validates, enriches and is e-mailed (PAYEE-0001 is an e-mail payee).
def remittance(request_id: str) -> dict[str, Any]:
    return {"schema_version": "1", "request_id": request_id, "partner": "FIRSTBANK",
            "status": "SETTLED", "payment_method": "ACH", "amount": "1250.00",
            "currency": "USD", "payee_id": "PAYEE-0001", "invoice_ids": ["INV-1001", "INV-1002"],
            "occurred_at": "2026-11-24T14:03:11Z"}


@contextmanager
def services(prefix: str, **extra_env: str) -> Iterator[dict[str, str]]:
    """Start ``remitflow run SERVICE`` for each service; yields service → base URL."""
    urls: dict[str, str] = {}
    with ExitStack() as stack:
        for service in SERVICES:
            port = free_port()
            env = {**os.environ, "REMITFLOW_PREFIX": prefix, "REMITFLOW_HTTP_PORT": str(port),
                   "REMITFLOW_HTTP_HOST": "127.0.0.1", "REMITFLOW_RECEIVE_WAIT_S": "1",
                   "REMITFLOW_SHUTDOWN_GRACE_S": "5",
                   "REMITFLOW_API_TOKEN": "iam-test-token-0123456789",
                   "REMITFLOW_SWEEPER_INTERVAL_S": "1", "REMITFLOW_STREAM_IDLE_MAX_S": "0.5",
                   "REMITFLOW_STREAM_POLL_INTERVAL_S": "0.2", "REMITFLOW_LEASE_TTL_S": "5",
                   **extra_env}
            proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "run", service],
                                    env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            stack.callback(_stop, proc)
            urls[service] = f"http://127.0.0.1:{port}"
        yield urls


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


async def all_ready(urls: dict[str, str], timeout_s: float = 60.0) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        async def ready() -> bool:
            try:
                codes = await asyncio.gather(*(http.get(f"{u}/readyz") for u in urls.values()))
            except httpx.TransportError:
                return False
            return all(r.status_code == 200 for r in codes)

        await eventually(ready, timeout_s=timeout_s, what="all services ready")


async def metrics_text(url: str) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"{url}/metrics")).text


async def aws_calls(url: str) -> dict[tuple[str, str], float]:
    """(botocore service id, operation) → count, from a service's ``/metrics``."""
    text = await metrics_text(url)
    return {(svc, op): float(n) for op, svc, n in _AWS_LABEL.findall(text)}
