"""The emulator's CPU per AWS call, moto as shipped against the emulator's caches.

``make bench-calls``: for each mode, an emulator of its own (``REMITFLOW_EMULATOR_SFN_CACHE``
``off``, then ``on``), one stack, then ``--count`` calls of each kind (``GetItem``,
``UpdateItem``, ``ReceiveMessage`` without waiting) one after another; prints the
emulator's CPU per call (from ``/proc``), this client's, and the ratio between the
modes, measured in one run (``docs/emulator.md``, "Request routing caches").
Developer tooling, not part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

from shared.aws.clients import AwsClients
from shared.aws.emulator import CACHES_ENV, wait_until_up
from shared.settings import Settings
from tools.procs import free_port
from tools.stack import bootstrap_stack

KINDS = ("GetItem", "UpdateItem", "ReceiveMessage")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(cache: str, count: int) -> dict[str, tuple[float, float]]:
    """(emulator ms, client ms) of CPU per call of each kind, with the caches ``cache``."""
    port = free_port()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "emulator", "--port",
                             str(port)], env={**os.environ, CACHES_ENV: cache},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up("127.0.0.1", port, timeout_s=120)
        return asyncio.run(_calls(proc.pid, f"http://127.0.0.1:{port}", count))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _calls(emulator_pid: int, endpoint: str, count: int) -> dict[str, tuple[float, float]]:
    settings = Settings(prefix="calls" + uuid.uuid4().hex[:6], aws_endpoint_url=endpoint)
    async with AwsClients(settings) as c:
        await bootstrap_stack(settings, c)
        table = f"{settings.prefix}-remittances"
        queue = (await c.sqs.get_queue_url(
            QueueName=f"{settings.prefix}-remittance-events"))["QueueUrl"]
        key = {"request_id": {"S": "REQ-CALLS"}}
        await c.dynamodb.put_item(TableName=table, Item={**key, "n": {"N": "0"}})
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "GetItem": lambda: c.dynamodb.get_item(TableName=table, Key=key),
            "UpdateItem": lambda: c.dynamodb.update_item(
                TableName=table, Key=key, UpdateExpression="SET n = n + :one",
                ExpressionAttributeValues={":one": {"N": "1"}}),
            "ReceiveMessage": lambda: c.sqs.receive_message(
                QueueUrl=queue, WaitTimeSeconds=0, MaxNumberOfMessages=10),
        }
        out = {}
        for kind in KINDS:
            await calls[kind]()                  # warm: first-call work is not per call
            emulator, client = _cpu_s(emulator_pid), time.process_time()
            for _ in range(count):
                await calls[kind]()
            out[kind] = (1000 * (_cpu_s(emulator_pid) - emulator) / count,
                         1000 * (time.process_time() - client) / count)
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=1000, help="calls of each kind per mode")
    args = p.parse_args()
    shipped = measure("off", args.count)
    cached = measure("on", args.count)
    print(f"emulator CPU per call, {args.count} calls each (client CPU in brackets)")
    print(f"{'call':16s} {'moto as shipped':>22s} {'with the caches':>22s} {'ratio':>6s}")
    for kind in KINDS:
        (e0, c0), (e1, c1) = shipped[kind], cached[kind]
        print(f"{kind:16s} {e0:9.2f} ms ({c0:5.2f} ms) {e1:9.2f} ms ({c1:5.2f} ms) "
              f"{e0 / e1 if e1 else float('nan'):5.2f}x")


if __name__ == "__main__":
    main()
