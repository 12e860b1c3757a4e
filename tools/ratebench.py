"""``python -m tools.ratebench``: can the API rate limiter be turned into a DoS?

Two measurements, printed as one JSON document:

- ``micro``: the limiter alone, 5,000 distinct clients per second on a simulated
  clock for ``--seconds``: cost per request and buckets held, for the bounded
  limiter (``shared/api.py``) and the previous design (a dict swept in full on
  every request once it held 10,000 clients), kept here as the baseline.
- ``http``: a real uvicorn process serving ``create_app`` (auth disabled, client
  address from ``X-Forwarded-For`` of a trusted proxy, so every request is a new
  client) while this process sends ``/v1/ping`` with a distinct address each
  time at up to ``--rate`` per second and samples ``/healthz`` latency.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import ipaddress
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from shared.api import RateLimiter


class SweepingLimiter:
    """The previous design, for comparison: O(n) sweep per request past 10,000 clients."""

    def __init__(self, rate_per_s: float, burst: int, clock: Any) -> None:
        self.rate, self.burst, self.clock = rate_per_s, float(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str) -> float:
        """Never refuses (the cost is what is measured)."""
        now = self.clock()
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self._buckets) > 10_000:
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
        self._buckets[client] = (tokens - 1, now)
        return 0.0

    def __len__(self) -> int:
        return len(self._buckets)


def micro(seconds: float, clients_per_s: int = 5000) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("bounded", "sweeping"):
        now = [0.0]
        clock = functools.partial(now.__getitem__, 0)
        limiter: Any = (RateLimiter(50, 100, clock=clock) if name == "bounded"
                        else SweepingLimiter(50, 100, clock=clock))
        calls, peak, started = int(seconds * clients_per_s), 0, time.perf_counter()
        for i in range(calls):
            now[0] = i / clients_per_s
            limiter.allow(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
            peak = max(peak, len(limiter)) if i % 1000 == 0 else peak
        spent = time.perf_counter() - started
        out[name] = {"requests": calls, "us_per_request": round(spent / calls * 1e6, 2),
                     "cpu_share_at_5000_per_s": round(spent / seconds, 3), "peak_buckets": peak}
    return out


SERVER = """
import ipaddress, uvicorn
from fastapi import APIRouter
from shared.api import ApiAuth, Heartbeat, RateLimiter, create_app
router = APIRouter()
@router.get("/ping")
async def ping() -> dict: return {"ok": True}
async def ready() -> dict: return {}
import time
from tools.ratebench import SweepingLimiter
hb = Heartbeat()
limiter = (SweepingLimiter(50, 100, time.monotonic) if "LIMITER" == "sweeping"
           else RateLimiter(50, 100))
app = create_app(service="bench", readiness=ready, heartbeat=hb, routers=[router],
                 auth=ApiAuth(disabled=True), limiter=limiter,
                 trusted_proxies=[ipaddress.ip_network("127.0.0.1/32")])
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False)
"""


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str,
               xff: str | None = None) -> int:
    extra = f"X-Forwarded-For: {xff}\r\n" if xff else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{extra}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    return int(head.split(b" ")[1])


async def http(port: int, seconds: float, rate: int, conns: int = 32) -> dict[str, Any]:
    counts: dict[int, int] = {}
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    seq = iter(range(10**9))

    async def load() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (now := time.monotonic()) < stop:
            i = next(seq)
            addr = str(ipaddress.IPv4Address(0x0A000000 + i))
            status = await _get(reader, writer, "/v1/ping", addr)
            counts[status] = counts.get(status, 0) + 1
            ahead = i / rate - (now - begun)
            if ahead > 0:
                await asyncio.sleep(ahead)
        writer.close()

    async def probe() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < stop:
            started = time.perf_counter()
            await _get(reader, writer, "/healthz")
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.05)
        writer.close()

    begun = time.monotonic()
    await asyncio.gather(probe(), *(load() for _ in range(conns)))
    total = sum(counts.values())
    latencies.sort()
    return {"v1_requests": total, "v1_per_s": round(total / seconds),
            "distinct_clients": total, "statuses": counts,
            "healthz_ms": {"p50": round(statistics.median(latencies), 2),
                           "p95": round(latencies[int(len(latencies) * 0.95)], 2),
                           "p99": round(latencies[int(len(latencies) * 0.99)], 2),
                           "max": round(latencies[-1], 2), "samples": len(latencies)}}


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.ratebench")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--port", type=int, default=18089)
    parser.add_argument("--limiter", choices=["bounded", "sweeping"], default="bounded",
                        help="which limiter the HTTP server uses")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"micro": micro(min(args.seconds, 10)), "limiter": args.limiter}
    script = SERVER.replace("PORT", str(args.port)).replace("LIMITER", args.limiter)
    server = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                asyncio.run(asyncio.wait_for(asyncio.open_connection("127.0.0.1", args.port), 1))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        rss_before = _rss_mib(server.pid)
        result["http"] = asyncio.run(http(args.port, args.seconds, args.rate))
        result["http"]["server_rss_mib"] = {"before": rss_before, "after": _rss_mib(server.pid)}
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
