"""Dependency faults: AWS unreachable for a while, and a slow webhook receiver."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from urllib.parse import urlparse

import httpx
import pytest

from services.enrichment.service import build as build_enrichment
from services.notification.service import build as build_notification
from shared.aws.dynamo import to_item
from tests.helpers import Env, eventually, free_port, job_in, running
from tools.demo import generate_messages
from tools.procs import service_process

pytestmark = pytest.mark.own_stack("breaks dependencies of real service processes")


class Outage:
    """A TCP proxy in front of the emulator that can drop everything and come back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port,
                                                  reuse_address=True)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._conns):
            writer.transport.abort()
        self._conns.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._conns.update({writer, up_writer})

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


@contextmanager
def enrichment_via(env: Env, endpoint: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    with service_process("enrichment", env.settings.prefix, {
            "AWS_ENDPOINT_URL": endpoint, "REMITFLOW_RECEIVE_WAIT_S": "1",
            "REMITFLOW_STREAM_FAILOVER_S": "3"}, port=port,
            log=env.log_for("enrichment")) as p:
        yield p.proc


async def test_aws_unreachable_then_back_nothing_lost(env: Env) -> None:
    outage = Outage(int(urlparse(env.endpoint).port or 0))
    await outage.up()
    port = free_port()
    with enrichment_via(env, f"http://127.0.0.1:{outage.port}", port) as proc:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            async def readyz(code: int) -> bool:
                try:
                    return (await http.get("/readyz")).status_code == code
                except httpx.TransportError:
                    return False

            await eventually(lambda: readyz(200), timeout_s=30, what="ready before outage")
            await outage.down()
            await eventually(lambda: readyz(503), timeout_s=30, what="not ready in outage")
            messages = generate_messages(3, prefix="REQ-OUTAGE")
            await env.send(*messages)           # partners keep sending meanwhile

            async def receive_failures() -> float:
                text = (await http.get("/metrics")).text
                return sum(float(v) for v in re.findall(
                    r'^remitflow_worker_errors_total\{worker="intake"\} (\S+)$', text, re.M))

            failed_before = await receive_failures()

            async def kept_failing() -> bool:   # the outage lasted several polls, not a blip
                return await receive_failures() >= failed_before + 2

            await eventually(kept_failing, timeout_s=60, what="two more failed receives")
            assert proc.poll() is None, "a dependency outage must not kill the process"
            assert (await http.get("/healthz")).status_code == 200, "liveness never asks AWS"
            await outage.up()
            for m in messages:
                await job_in(env.store(), m["request_id"], "COMPLETED", timeout_s=60)
            await eventually(lambda: readyz(200), timeout_s=30, what="ready again")
    await outage.down()


class SlowHandler(BaseHTTPRequestHandler):
    delay_s = 0.0
    hits = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).hits += 1
        time.sleep(self.delay_s)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


async def test_slow_webhook_receiver_heartbeats_keep_the_task(env: Env) -> None:
    """The receiver takes longer than the workflow's heartbeat timeout (3 x 5 s here);
    the worker's heartbeats keep the task alive and it is delivered once."""
    SlowHandler.delay_s, SlowHandler.hits = 17.0, 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    Thread(target=server.serve_forever, daemon=True).start()
    payee = {"payee_id": "PAYEE-SLOW", "name": "Slow Receiver KK", "payee_type": "utility",
             "country": "JP", "locale": "ja-JP", "channel": "webhook",
             "webhook_url": f"http://127.0.0.1:{server.server_address[1]}/hook",
             "webhook_secret": "whsec_cmVtaXRmbG93LWRlbW8td2ViaG9vay1zZWNyZXQtMzJi"}
    await env.clients.dynamodb.put_item(TableName=env.names.payees, Item=to_item(payee))
    await env.clients.dynamodb.put_item(TableName=env.names.invoices, Item=to_item({
        "invoice_id": "INV-SLOW", "payee_id": "PAYEE-SLOW", "amount": "5000",
        "currency": "JPY", "description": "Slow", "purpose": "utility_bill"}))
    message = dict(generate_messages(1, prefix="REQ-SLOW")[0], payee_id="PAYEE-SLOW",
                   invoice_ids=["INV-SLOW"], amount="5000", currency="JPY")
    patient = env.with_settings(task_heartbeat_s=2, webhook_timeout_s=30)
    try:
        async with running(patient, build_enrichment), running(patient, build_notification):
            await env.send(message)
            job = await job_in(env.store("notifications"), message["request_id"], "SENT",
                               timeout_s=90)
    finally:
        server.shutdown()
    assert job.attempt == 1 and SlowHandler.hits == 1
