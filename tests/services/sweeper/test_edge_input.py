"""Malformed input at the HTTP edge answers 4xx, never 500, and console errors stay secure.

The sweeper's and a job kind's real apps in-process (ASGI) over the emulator: a
100 kB or non-ASCII request id in a ``/v1`` path or a console page, a non-ASCII CSRF
token, and the console's error answers (404, 413, 400, 403), each with the
console's security headers.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

import httpx
import pytest

from services.sweeper.console.app import SECURITY_HEADERS
from shared.api import ApiAuth, Heartbeat, create_app
from shared.pipeline.assemble import status_router
from shared.pipeline.jobs import valid_request_id
from tests.helpers import CONSOLE_TOKEN, Env, console, console_sign_in, csrf_of

BAD_IDS = ["R" * 60_000, "REQ 1", "réq-1", "REQ-1\n", "a" * 129]
BEARER = {"authorization": f"Bearer {CONSOLE_TOKEN}"}


def secure(resp: httpx.Response) -> bool:
    return all(resp.headers.get(k) == v for k, v in SECURITY_HEADERS.items())


def test_the_edge_rule_is_the_intakes() -> None:
    assert valid_request_id("REQ-2026.01_a:b") and valid_request_id("x" * 128)
    assert not any(valid_request_id(bad) for bad in BAD_IDS)


@pytest.mark.parametrize("bad", BAD_IDS, ids=["60kB", "space", "non-ascii", "newline",
                                              "129"])
async def test_a_malformed_request_id_is_4xx_on_v1_and_console(env: Env, bad: str) -> None:
    path = quote(bad, safe="")
    async with console(env) as http:
        for action, body in (("redrive", {}), ("resolve", {"outcome": "sent", "note": "x"})):
            resp = await http.post(f"/v1/jobs/notifications/{path}/{action}", json=body,
                                   headers=BEARER)
            assert resp.status_code == 422, (action, resp.status_code, resp.text[:300])
            assert bad not in resp.text  # the input is not echoed back
        await console_sign_in(http)
        page = await http.get(f"/console/requests/{path}")
        assert page.status_code == 400 and secure(page), page.status_code
        search = await http.get(f"/console/search?q={path}&mode=exact")
        assert search.status_code in (200, 400) and secure(search), search.status_code
        form = csrf_of((await http.get("/console")).text)
        resolve = await http.post("/console/resolve", data={
            "csrf": form, "table": "notifications", "request_id": bad, "outcome": "sent",
            "note": "checked"})
        assert 400 <= resolve.status_code < 500 and secure(resolve), resolve.status_code


async def test_a_job_kinds_status_route_refuses_a_malformed_id(env: Env) -> None:
    async def ready() -> dict[str, object]:
        return {}

    app = create_app(service="t", readiness=ready, heartbeat=Heartbeat(),
                     routers=[status_router("remittances", env.store())],
                     auth=ApiAuth(token=CONSOLE_TOKEN))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as http:
        for bad in BAD_IDS:
            resp = await http.get(f"/v1/remittances/{quote(bad, safe='')}", headers=BEARER)
            assert resp.status_code == 422, (bad[:20], resp.status_code)
        unknown = await http.get(f"/v1/remittances/REQ-{uuid.uuid4().hex}", headers=BEARER)
        assert unknown.status_code == 404


@pytest.mark.parametrize("csrf", ["é" * 40, "\u2603", "ok\udcff".encode("utf-8", "surrogatepass")
                                  .decode("latin-1")])
async def test_a_non_ascii_csrf_token_is_403_with_the_security_headers(env: Env,
                                                                        csrf: str) -> None:
    async with console(env) as http:
        await http.get("/console/login")  # an anonymous session cookie
        resp = await http.post("/console/login", data={"csrf": csrf, "token": "x"})
        assert resp.status_code == 403 and secure(resp), resp.status_code


async def test_every_console_error_carries_the_security_headers(env: Env) -> None:
    async with console(env) as http:
        await console_sign_in(http)
        answers = {
            "404": await http.get("/console/no-such-page"),
            "405": await http.delete("/console/login"),
            "413": await http.post("/console/login", content=b"a=" + b"x" * 200_000,
                                   headers={"content-type":
                                            "application/x-www-form-urlencoded"}),
            "403 forged": await http.post("/console/redrive", data={"csrf": "forged"}),
        }
    for name, resp in answers.items():
        assert name.split()[0] == str(resp.status_code), (name, resp.status_code)
        assert secure(resp), (name, dict(resp.headers))
