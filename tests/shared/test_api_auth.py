"""Secure by default: no token, no service; what stays open and what never does."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
from fastapi import APIRouter

from shared.api import ApiAuth, Heartbeat, RateLimiter, create_app
from shared.settings import SettingsError, load_settings
from tests.helpers import Env, eventually, free_port

TOKEN = "auth-test-token-0123456789"


def _app(auth: ApiAuth, limiter: RateLimiter | None = None,
         trusted: tuple[str, ...] = ()) -> Any:
    import ipaddress

    router = APIRouter()

    @router.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    async def ready() -> dict[str, object]:
        return {}

    return create_app(service="t", readiness=ready, heartbeat=Heartbeat(), routers=[router],
                      auth=auth, limiter=limiter,
                      trusted_proxies=[ipaddress.ip_network(t) for t in trusted])


def _env_without_token(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REMITFLOW_API_TOKEN", "REMITFLOW_API_AUTH")}
    return {**env, **extra}


def test_service_refuses_to_start_without_a_token(env: Env) -> None:
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "run", "sweeper"],
                          env=_env_without_token(REMITFLOW_PREFIX=env.settings.prefix,
                                                 REMITFLOW_HTTP_PORT=str(free_port())),
                          capture_output=True, timeout=60)
    assert proc.returncode != 0
    assert b"REMITFLOW_API_TOKEN" in proc.stderr and b"REMITFLOW_API_AUTH=disabled" in proc.stderr
    assert b"service.started" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("token", ["change-me", "short-token", "CHANGE-ME-PLEASE-0123456789"])
def test_placeholder_and_short_tokens_are_refused(monkeypatch: pytest.MonkeyPatch,
                                                  token: str) -> None:
    monkeypatch.setenv("REMITFLOW_API_TOKEN", token)
    with pytest.raises(SettingsError, match="REMITFLOW_API_TOKEN"):
        load_settings()


def test_an_app_without_a_token_must_say_auth_is_disabled() -> None:
    with pytest.raises(ValueError):
        ApiAuth()


async def test_docs_openapi_and_v1_need_the_token_health_does_not() -> None:
    app = _app(ApiAuth(token=TOKEN))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as http:
        for path in ("/v1/ping", "/docs", "/openapi.json"):
            assert (await http.get(path)).status_code == 401, path
            assert (await http.get(path, headers={"Authorization": "Bearer nope"})
                    ).status_code == 401, path
            assert (await http.get(path, headers=auth)).status_code == 200, path
        assert "/v1/ping" in (await http.get("/openapi.json", headers=auth)).json()["paths"]
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await http.get(path)).status_code == 200, path
        assert (await http.get("/readyz")).json()["auth"] == "bearer"


def _spawn(service: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tools.cli", "run", service], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def test_explicitly_disabled_auth_warns_and_shows_on_readyz(env: Env) -> None:
    port = free_port()
    proc = _spawn("sweeper", _env_without_token(
        REMITFLOW_PREFIX=env.settings.prefix, REMITFLOW_API_AUTH="disabled",
        REMITFLOW_HTTP_PORT=str(port), REMITFLOW_HTTP_HOST="127.0.0.1",
        REMITFLOW_SHUTDOWN_GRACE_S="5"))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            async def ready() -> dict[str, Any] | None:
                try:
                    resp = await http.get("/readyz")
                except httpx.TransportError:
                    return None
                return dict(resp.json()) if resp.status_code == 200 else None

            body = await eventually(ready, what="sweeper ready")
            assert body["auth"] == "disabled"
            assert (await http.get("/v1/jobs", params={"table": "remittances",
                                                       "state": "failed"})).status_code == 200
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    assert '"event": "api.auth_disabled"' in out and '"level": "warning"' in out


def test_shipped_examples_carry_no_usable_token() -> None:
    from pathlib import Path

    from shared.settings import token_problem

    example = Path("k8s/kustomize/overlays/example/api-token.env.example").read_text()
    token = next(line.partition("=")[2] for line in example.splitlines()
                 if line.startswith("api-token="))
    assert token_problem(token), "the example overlay's placeholder must be refused"
    assert not Path("k8s/kustomize/overlays/example/api-token.env").exists() or \
        "api-token.env" in Path(".gitignore").read_text()
    assert "REMITFLOW_API_TOKEN: ${REMITFLOW_API_TOKEN:?" in Path("docker-compose.yml").read_text()
