"""The operator console over HTTP (in-process ASGI): sign-in, CSRF, headers, pages, actions.

The browser scenarios are in ``tests/browser/test_console_browser.py``; these check the
same behaviour without a browser, fast, and the things a browser hides (headers,
cookie attributes, a forged POST).
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from shared.pipeline.jobs import Status
from tests.helpers import CONSOLE_TOKEN as TOKEN
from tests.helpers import Env, console, email_in_doubt, message, retrying

pytestmark = pytest.mark.own_stack("lists every job of a table")

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html[:500]
    return found.group(1)


async def sign_in(http: httpx.AsyncClient, token: str = TOKEN) -> httpx.Response:
    page = await http.get("/console/login")
    return await http.post("/console/login", data={"csrf": csrf_of(page.text), "token": token,
                                                   "next": "/console"})


async def failed_job(env: Env, request_id: str, short: str = "remittances") -> None:
    store = env.store(short)
    job = await retrying(store, request_id, attempt=2, payload=json.dumps(message(request_id)))
    await store.transition(job, Status.FAILED, set_={"partner": "acme-bank",
                                                      "last_error": "card 4111111111111111"})


async def test_signed_out_is_sent_to_sign_in_and_a_wrong_token_is_refused(env: Env) -> None:
    async with console(env) as http:
        resp = await http.get("/console/jobs?state=failed")
        assert resp.status_code == 303
        assert resp.headers["location"].startswith("/console/login?next=%2Fconsole%2Fjobs")
        wrong = await sign_in(http, "not-the-token")
        assert wrong.status_code == 401 and "not the API token" in wrong.text
        assert (await http.get("/console")).status_code == 303


async def test_sign_in_sets_a_strict_http_only_expiring_cookie_and_security_headers(
        env: Env) -> None:
    async with console(env) as http:
        resp = await sign_in(http)
        assert resp.status_code == 303 and resp.headers["location"] == "/console"
        cookie = resp.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        # the session's remaining life: 8 h, less the second that may tick while signing in
        max_age = int(cookie.split("Max-Age=")[1].split(";")[0])
        assert 28800 - 2 <= max_age <= 28800, cookie
        assert TOKEN not in cookie
        page = await http.get("/console")
        assert page.status_code == 200 and "Jobs by state" in page.text
        assert TOKEN not in page.text
        headers = page.headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
        assert "<script" not in page.text and "style=" not in page.text


async def test_a_post_without_the_csrf_token_is_refused(env: Env) -> None:
    await failed_job(env, "REQ-CSRF-1")
    async with console(env) as http:
        await sign_in(http)
        for data in ({"table": "remittances", "request_id": "REQ-CSRF-1"},
                     {"table": "remittances", "request_id": "REQ-CSRF-1", "csrf": "forged"}):
            resp = await http.post("/console/redrive", data=data)
            assert resp.status_code == 403 and "CSRF" in resp.text
            assert resp.headers["x-frame-options"] == "DENY"
        login = await http.post("/console/login", data={"token": TOKEN})
        assert login.status_code == 403
    assert (await env.store().require("REQ-CSRF-1")).status is Status.FAILED


async def test_lists_search_timeline_and_redrive_share_the_api_implementation(
        env: Env) -> None:
    await failed_job(env, "REQ-CON-1")
    await failed_job(env, "REQ-CON-2")
    async with console(env) as http:
        await sign_in(http)
        listed = await http.get("/console/jobs", params={"table": "remittances",
                                                         "state": "failed",
                                                         "partner": "acme-bank"})
        assert listed.status_code == 200
        assert "REQ-CON-1" in listed.text and "REQ-CON-2" in listed.text
        assert "4111111111111111" not in listed.text and "…1111" in listed.text
        other = await http.get("/console/jobs", params={"state": "failed", "partner": "x"})
        assert "REQ-CON-1" not in other.text
        api = await http.get("/v1/jobs", params={"state": "failed", "partner": "acme-bank"},
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert sorted(j["request_id"] for j in api.json()["jobs"]) == ["REQ-CON-1", "REQ-CON-2"]

        exact = await http.get("/console/search", params={"q": "REQ-CON-1"})
        assert exact.status_code == 303
        assert exact.headers["location"] == "/console/requests/REQ-CON-1"
        prefix = await http.get("/console/search", params={"q": "REQ-CON-", "mode": "prefix",
                                                           "table": "remittances"})
        assert "bounded Scan" in prefix.text and "REQ-CON-2" in prefix.text

        timeline = await http.get("/console/requests/REQ-CON-1")
        assert timeline.status_code == 200 and "REQ-CON-1-a2" in timeline.text
        confirm = await http.post("/console/redrive/confirm", data={
            "csrf": csrf_of(timeline.text), "table": "remittances",
            "request_id": ["REQ-CON-1", "REQ-CON-2"]})
        assert confirm.status_code == 200
        assert "RUNNING as attempt 3" in confirm.text and "REQ-CON-1-a3" in confirm.text
        done = await http.post("/console/redrive", data={
            "csrf": csrf_of(confirm.text), "table": "remittances", "request_id": ["REQ-CON-1"],
            "note": "partner fixed the account"})
        assert done.status_code == 200 and "RUNNING as attempt 3" in done.text
    job = await env.store().require("REQ-CON-1")
    assert job.status is Status.RUNNING and job.attempt == 3
    entry = job.raw["history"][-1]
    assert re.search(r"redrive by console session [0-9a-f]{8}: partner fixed the account$",
                     entry), entry
    assert (await env.store().require("REQ-CON-2")).status is Status.FAILED


async def test_auth_disabled_says_so_and_still_needs_csrf(env: Env) -> None:
    await failed_job(env, "REQ-NOAUTH")
    async with console(env, token=None) as http:
        first = await http.get("/console")
        assert first.status_code == 303  # sets the session cookie used for CSRF
        page = await http.get("/console")
        assert page.status_code == 200 and 'id="auth-disabled"' in page.text
        refused = await http.post("/console/redrive", data={"table": "remittances",
                                                            "request_id": "REQ-NOAUTH"})
        assert refused.status_code == 403
        ok = await http.post("/console/redrive", data={"csrf": csrf_of(page.text),
                                                       "table": "remittances",
                                                       "request_id": "REQ-NOAUTH"})
        assert ok.status_code == 200
    assert (await env.store().require("REQ-NOAUTH")).status is Status.RUNNING


async def test_an_unknown_delivery_outcome_is_resolved_from_the_timeline(env: Env) -> None:
    """The timeline offers sent / not sent for an in-doubt e-mail; the decision goes
    through the same Sweeper.resolve as the API and is recorded with the session."""
    store = env.store("notifications")
    await email_in_doubt(env, "REQ-RESOLVE-1", "SES send outcome unknown (InternalFailure)")
    async with console(env) as http:
        await sign_in(http)
        page = await http.get("/console/requests/REQ-RESOLVE-1")
        assert 'action="/console/resolve"' in page.text and "Resolve: sent" in page.text
        form = {"table": "notifications", "request_id": "REQ-RESOLVE-1", "outcome": "sent",
                "note": "seen in the SES logs"}
        refused = await http.post("/console/resolve", data=form)
        assert refused.status_code == 403, "no CSRF token, no decision"
        done = await http.post("/console/resolve", data={**form, "csrf": csrf_of(page.text)})
        assert done.status_code == 303
    resolved = await store.require("REQ-RESOLVE-1")
    assert resolved.status is Status.SENT and resolved.raw["delivery_id"] == "operator"
    assert re.search(r"resolved by console session \S+: sent \(seen in the SES logs\)",
                     " | ".join(resolved.raw["history"]))
