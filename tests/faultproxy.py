"""An HTTP proxy in front of the emulator that answers chosen AWS calls with faults.

Services under test run as real processes with ``AWS_ENDPOINT_URL`` pointing at the
proxy; every request is forwarded to the emulator unchanged unless a :class:`Fault`
matches it (by ``X-Amz-Target`` operation and a pattern on the body, e.g. one
table's name), in which case the proxy answers the way AWS does when it throttles
(400 ``ThrottlingException``), fails (500 ``InternalServerError``) or hangs; or it
forwards the request and then answers 500 (``lost_response``: the write committed,
its answer was lost, the client will retry it). So a dependency outage is simulated
from outside the process, never with client mocks.

Usage::

    async with FaultProxy(env.endpoint) as proxy:
        proxy.fail(Fault("DynamoDB_20120810.PutItem", body=r'"TableName": "x-remittances"'))
        ...  # run a service with AWS_ENDPOINT_URL=proxy.endpoint
        proxy.heal()
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import aiohttp
from aiohttp import web

Kind = Literal["throttle", "error", "hang", "lost_response"]
# Host is kept: the emulator builds queue URLs from it, so SQS calls stay on the proxy too.
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
_FAULT_BODY = {
    "throttle": (400, "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                 "Rate of requests exceeds the allowed throughput."),
    "error": (500, "com.amazonaws.dynamodb.v20120810#InternalServerError",
              "Internal server error"),
}


@dataclass(frozen=True)
class Fault:
    """Answer matching requests with ``kinds`` in turn (e.g. throttle, error, throttle…)."""

    target: str
    body: str = ""
    kinds: tuple[Kind, ...] = ("throttle", "error")
    hang_s: float = 30.0
    times: int | None = None    # answer only the first ``times`` matching calls

    def matches(self, target: str, body: str) -> bool:
        return target.startswith(self.target) and (not self.body or bool(re.search(self.body,
                                                                                    body)))


class FaultProxy:
    """Forwards to ``upstream``; ``refused`` records (target, body) of every faulted call."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: list[Fault] = []
        self.hits: dict[Fault, int] = {}
        self.refused: list[tuple[str, str]] = []
        self.forwarded = 0
        self.responses: dict[str, list[str]] = {}
        self.requests: dict[str, list[str]] = {}
        self.calls: list[tuple[str, str]] | None = None    # every (target, body) when recording
        self.unsigned: list[str] = []      # requests without a SigV4 signature, when recording
        self._turn = itertools.count()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.endpoint = ""

    def fail(self, *faults: Fault) -> None:
        self.faults = list(faults)

    def heal(self) -> None:
        self.faults = []

    def watch(self, target: str) -> None:
        """Record the response bodies of ``target`` calls (``AmazonSQS.ReceiveMessage``)."""
        self.responses.setdefault(target, [])

    def record(self, target: str) -> None:
        """Record the request bodies of ``target`` calls (``AmazonSQS.ChangeMessageVisibility``)."""
        self.requests.setdefault(target, [])

    def record_all(self) -> None:
        """Record (``X-Amz-Target``, body) of every AWS call from now on (``calls``).

        An AWS call is signed (SigV4). A request without a signature is no AWS call:
        the proxy listens on a port that was free a moment ago, and another test's
        client of that port's last owner (a Prometheus scrape, a health probe) may
        still knock. Those go to ``unsigned`` (method, path, user agent), not ``calls``.
        """
        self.calls = []
        self.unsigned = []

    def seen(self, target: str, needle: str) -> int:
        """How many recorded ``target`` responses carried ``needle``."""
        return sum(needle in body for body in self.responses.get(target, []))

    def refusals(self, needle: str) -> int:
        """How many faulted requests carried ``needle`` (a request id, say) in their body."""
        return sum(needle in body for _, body in self.refused)

    async def __aenter__(self) -> FaultProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        target = request.headers.get("X-Amz-Target", "")
        text = body.decode("utf-8", "replace")
        if target in self.requests:
            self.requests[target].append(text)
        if self.calls is not None:
            signature = request.headers.get("Authorization", "")
            if not signature.startswith("AWS4-HMAC-SHA256 "):
                self.unsigned.append(f"{request.method} {request.path_qs} "
                                     f"({request.headers.get('User-Agent', '')})")
            elif not target and "/s3/aws4_request" in signature:
                # S3 is REST: its call is the method and path (``S3 GET /bucket/key``)
                self.calls.append((f"S3 {request.method} {request.path_qs}", text))
            else:
                self.calls.append((target, text))
        for fault in self.faults:
            if fault.matches(target, text):
                if fault.times is not None and self.hits.get(fault, 0) >= fault.times:
                    continue
                self.hits[fault] = self.hits.get(fault, 0) + 1
                self.refused.append((target, text))
                kind = fault.kinds[next(self._turn) % len(fault.kinds)]
                if kind == "lost_response":
                    await self._forward(request, body, target)
                    kind = "error"
                if kind == "hang":
                    await asyncio.sleep(fault.hang_s)
                    kind = "error"
                status, code, message = _FAULT_BODY[kind]
                return web.Response(status=status, content_type="application/x-amz-json-1.0",
                                    text=json.dumps({"__type": code, "message": message}))
        return await self._forward(request, body, target)

    async def _forward(self, request: web.Request, body: bytes, target: str) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(request.method, self.upstream + str(request.rel_url),
                                         headers=headers, data=body,
                                         allow_redirects=False) as resp:
            payload = await resp.read()
            self.forwarded += 1
            if target in self.responses:
                self.responses[target].append(payload.decode("utf-8", "replace"))
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
            return web.Response(status=resp.status, body=payload, headers=out)
