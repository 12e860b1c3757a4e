"""Webhook delivery against a real local HTTP server, verified with standardwebhooks."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from services.notification.pools import HostPools
from services.notification.webhook import (
    DeliveryResult,
    TargetRefused,
    build_body,
    check_target,
    deliver,
    parse_retry_after,
    refusal_reason,
    sign,
    webhook_id_for,
)
from tests.services.notification.support import SECRET, Reply, ScriptedServer, make_advice


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def client() -> AsyncIterator[HostPools]:
    pools = HostPools()
    try:
        yield pools
    finally:
        await pools.aclose()


PAYLOAD = make_advice().model_dump(mode="json")
MSG_ID = webhook_id_for("REQ-2026-000002")


async def post(client: HostPools, url: str, **kw: Any) -> DeliveryResult:
    params: dict[str, Any] = {"url": url, "secret": SECRET, "msg_id": MSG_ID,
                                 "payload": PAYLOAD, "timeout_s": 2.0, "allow_private": True,
                                 "backoff_s": 0.01}
    params.update(kw)
    return await deliver(client, **params)


def test_sign_matches_reference_implementation() -> None:
    body = b'{"type":"remittance.advice"}'
    signature = sign(SECRET, "msg_1", 1_700_000_000, body)
    assert signature.startswith("v1,")
    when = dt.datetime.fromtimestamp(1_700_000_000, tz=dt.UTC)
    assert signature == Webhook(SECRET).sign("msg_1", when, body.decode())


def test_bad_secret_is_refused_without_echo() -> None:
    with pytest.raises(ValueError) as info:
        sign("whsec_not base64!!", "msg_1", 1, b"{}")
    assert "not base64!!" not in str(info.value)


def test_webhook_id_is_stable() -> None:
    assert webhook_id_for("REQ-1") == webhook_id_for("REQ-1")
    assert webhook_id_for("REQ-1") != webhook_id_for("REQ-2")
    assert webhook_id_for("REQ-1").startswith("msg_")


def test_body_envelope_is_deterministic() -> None:
    body = build_body(PAYLOAD)
    assert body == build_body(PAYLOAD)
    doc = json.loads(body)
    assert doc["type"] == "remittance.advice"
    assert doc["timestamp"] == "2026-11-24T08:00:00Z"  # occurred_at, in UTC
    assert doc["data"]["amount"] == "1234.56"  # a string: no float anywhere
    assert doc["data"]["payee"]["name"] == "Brandt Software GmbH"


async def test_delivered_and_verified(server: ScriptedServer, client: HostPools) -> None:
    url = server.on("/hook", Reply(204, body=b""))
    result = await post(client, url)
    assert result.outcome == "delivered" and result.status_code == 204
    assert result.attempts == 1
    [hit] = server.hits("/hook")
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["webhook-id"] == MSG_ID
    event = Webhook(SECRET).verify(hit.body, hit.headers)
    assert event["data"]["request_id"] == "REQ-2026-000002"
    assert hit.body == build_body(PAYLOAD)
    assert "whsec" not in json.dumps(hit.headers)


async def test_tampered_body_fails_verification(server: ScriptedServer,
                                                client: HostPools) -> None:
    await post(client, server.on("/hook"))
    [hit] = server.hits("/hook")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(hit.body.replace(b"1234.56", b"9234.56"), hit.headers)


async def test_503_then_200_retries_quickly(server: ScriptedServer,
                                            client: HostPools) -> None:
    url = server.on("/hook", Reply(503, {"Retry-After": "0"}, b"busy"), Reply(200))
    result = await post(client, url)
    assert (result.outcome, result.status_code, result.attempts) == (
        "delivered", 200, 2)
    hits = server.hits("/hook")
    assert [h.headers["webhook-id"] for h in hits] == [MSG_ID, MSG_ID]
    assert hits[0].body == hits[1].body
    for hit in hits:
        Webhook(SECRET).verify(hit.body, hit.headers)


async def test_persistent_5xx_is_transient(server: ScriptedServer,
                                           client: HostPools) -> None:
    url = server.on("/hook", *[Reply(500, body=b"boom")] * 5)
    result = await post(client, url, max_quick_retries=2)
    assert result.outcome == "transient" and result.attempts == 3
    assert "500" in result.detail and "boom" in result.detail


async def test_long_retry_after_ends_quick_retries(server: ScriptedServer,
                                                   client: HostPools) -> None:
    url = server.on("/hook", Reply(429, {"Retry-After": "3600"}))
    result = await post(client, url)
    assert result.outcome == "transient" and result.attempts == 1
    assert result.retry_after_s == 3600


async def test_410_is_gone(server: ScriptedServer, client: HostPools) -> None:
    result = await post(client, server.on("/hook", Reply(410)))
    assert (result.outcome, result.attempts) == ("gone", 1)


async def test_404_is_business(server: ScriptedServer, client: HostPools) -> None:
    result = await post(client, server.on("/hook", Reply(404, body=b"no such hook")))
    assert (result.outcome, result.status_code) == ("business", 404)
    assert len(server.hits("/hook")) == 1


async def test_redirect_is_business_and_not_followed(server: ScriptedServer,
                                                     client: HostPools) -> None:
    target = server.on("/elsewhere")
    url = server.on("/hook", Reply(302, {"Location": target}))
    result = await post(client, url)
    assert (result.outcome, result.status_code) == ("business", 302)
    assert "not followed" in result.detail
    assert server.hits("/elsewhere") == []


async def test_timeout_is_transient(server: ScriptedServer, client: HostPools) -> None:
    url = server.on("/slow", Reply(200, delay_s=2.0))
    result = await post(client, url, timeout_s=0.3, max_quick_retries=0)
    assert result.outcome == "transient" and "timed out" in result.detail


async def test_connection_refused_is_transient(client: HostPools) -> None:
    srv = ScriptedServer()  # bound, then closed without serving: nothing listens
    url = srv.base_url + "/hook"
    srv._server.server_close()
    result = await post(client, url, max_quick_retries=1)
    assert result.outcome == "transient" and result.attempts == 2


async def test_same_webhook_id_across_calls(server: ScriptedServer,
                                            client: HostPools) -> None:
    url = server.on("/hook", Reply(500), Reply(200))
    for _ in range(2):
        await deliver(client, url=url, secret=SECRET, payload=PAYLOAD, timeout_s=2,
                      msg_id=webhook_id_for("REQ-2026-000002"), max_quick_retries=0,
                      allow_private=True)
    ids = {h.headers["webhook-id"] for h in server.hits("/hook")}
    assert ids == {webhook_id_for("REQ-2026-000002")}
    assert len(server.hits("/hook")) == 2


@pytest.mark.parametrize(("url", "reason"), [
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://169.254.10.1/hook", "link-local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://[::ffff:169.254.169.254]/hook", "metadata"),
    ("http://[fd00:ec2::254]/hook", "metadata"),
    ("http://0.0.0.0:8080/hook", "unspecified"),
    ("http://224.0.0.1/hook", "multicast"),
    ("ftp://example.com/hook", "scheme"),
    ("file:///etc/passwd", "scheme"),
])
async def test_refused_targets(url: str, reason: str, client: HostPools) -> None:
    result = await deliver(client, url=url, secret=SECRET, msg_id=MSG_ID, payload=PAYLOAD,
                           timeout_s=1, allow_private=True)
    assert (result.outcome, result.attempts) == ("business", 0)
    assert "refused" in result.detail and reason in result.detail


async def test_private_targets_need_allow_private(server: ScriptedServer,
                                                  client: HostPools) -> None:
    url = server.on("/hook")
    result = await post(client, url, allow_private=False)
    assert result.outcome == "business" and "loopback" in result.detail
    assert server.hits("/hook") == []


async def test_resolved_names_are_checked_and_pinned() -> None:
    async def private(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.1.2.3"]

    async def public(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]

    with pytest.raises(TargetRefused, match=r"10\.1\.2\.3: private"):
        await check_target("https://hooks.example/x", resolver=private)
    target = await check_target("https://hooks.example:8443/x?a=1", resolver=public)
    assert [str(u) for u in target.urls] == ["https://93.184.215.14:8443/x?a=1"]
    assert target.host_header == "hooks.example:8443"
    assert target.sni_hostname == "hooks.example"
    allowed = await check_target("http://hooks.internal/x", resolver=private, allow_private=True)
    assert len(allowed.urls) == 2


async def test_unresolvable_host_is_business(client: HostPools) -> None:
    async def nxdomain(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    result = await deliver(client, url="https://nope.invalid/", secret=SECRET, msg_id=MSG_ID,
                           payload=PAYLOAD, timeout_s=1, resolver=nxdomain)
    assert result.outcome == "business" and "cannot resolve" in result.detail


async def test_invalid_secret_is_business(server: ScriptedServer, client: HostPools) -> None:
    result = await deliver(client, url=server.on("/hook"), secret="whsec_%%%", msg_id=MSG_ID,
                           payload=PAYLOAD, timeout_s=1, allow_private=True)
    assert result.outcome == "business" and "secret" in result.detail
    assert server.hits("/hook") == []


@pytest.mark.parametrize(("address", "private_ok", "public_only"), [
    ("8.8.8.8", None, None),
    ("2606:4700::1111", None, None),
    ("127.0.0.1", None, "loopback address"),
    ("::1", None, "loopback address"),
    ("10.0.0.1", None, "private or non-public address"),
    ("100.64.0.1", None, "private or non-public address"),
    ("fc00::1", None, "private or non-public address"),
    ("::ffff:10.0.0.1", None, "private or non-public address"),
    ("2002:a9fe:a9fe::1", "cloud metadata address", "cloud metadata address"),  # 6to4
    ("255.255.255.255", "reserved address", "reserved address"),
])
def test_refusal_reason(address: str, private_ok: str | None, public_only: str | None) -> None:
    ip = ipaddress.ip_address(address)
    assert refusal_reason(ip, allow_private=True) == private_ok
    assert refusal_reason(ip, allow_private=False) == public_only


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
