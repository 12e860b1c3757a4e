"""The API rate limiter cannot become the DoS: bounded, O(1), keyed on who is calling."""

from __future__ import annotations

import ipaddress

import httpx
from fastapi import APIRouter

from shared.api import ApiAuth, Heartbeat, RateLimiter, create_app

TOKEN = "rate-limit-test-token-0123"


def _client(auth: ApiAuth, limiter: RateLimiter, trusted: tuple[str, ...] = (),
            client: tuple[str, int] = ("127.0.0.1", 5000)) -> httpx.AsyncClient:
    router = APIRouter()

    @router.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    async def ready() -> dict[str, object]:
        return {}

    app = create_app(service="t", readiness=ready, heartbeat=Heartbeat(), routers=[router],
                     auth=auth, limiter=limiter,
                     trusted_proxies=[ipaddress.ip_network(t) for t in trusted])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=client),
                             base_url="http://t")


def test_memory_is_bounded_whatever_the_number_of_clients() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=1, burst=5, max_clients=100, clock=lambda: now[0])
    for i in range(10_000):
        now[0] = i / 5000
        assert limiter.allow(f"client-{i}") == 0.0
    assert len(limiter) <= 100
    now[0] += 10  # idle long enough to have refilled: dropped, which changes nothing
    limiter.allow("late")
    assert len(limiter) == 1


async def test_authenticated_callers_are_limited_by_token_not_address() -> None:
    limiter = RateLimiter(rate_per_s=0.01, burst=2)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with _client(ApiAuth(token=TOKEN), limiter, trusted=("127.0.0.1/32",)) as http:
        for _ in range(5):  # refused before the limiter: nobody's bucket is spent
            assert (await http.get("/v1/ping")).status_code == 401
        codes = [(await http.get("/v1/ping", headers={**auth, "X-Forwarded-For": f"10.0.0.{i}"})
                  ).status_code for i in range(3)]
    assert codes == [200, 200, 429], "moving address does not buy a new bucket"


async def test_forwarded_for_counts_only_from_trusted_proxies() -> None:
    async with _client(ApiAuth(disabled=True), RateLimiter(rate_per_s=0.01, burst=1),
                       trusted=("127.0.0.0/8",)) as http:
        async def get(xff: str) -> int:
            return (await http.get("/v1/ping", headers={"X-Forwarded-For": xff})).status_code

        assert await get("10.0.0.1") == 200
        assert await get("10.0.0.2") == 200
        # A client prepending addresses does not choose its key: the hop the proxy saw wins.
        assert await get("1.2.3.4, 10.0.0.1") == 429
    async with _client(ApiAuth(disabled=True), RateLimiter(rate_per_s=0.01, burst=1),
                       trusted=("192.168.0.0/16",)) as http:
        first = await http.get("/v1/ping", headers={"X-Forwarded-For": "10.0.0.1"})
        second = await http.get("/v1/ping", headers={"X-Forwarded-For": "10.0.0.2"})
    assert (first.status_code, second.status_code) == (200, 429), "untrusted peer: XFF ignored"
