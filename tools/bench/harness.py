"""One pipeline run: emulator + bootstrap + three service processes + N remittances.

The emulator is its own OS process (``python -m tools.cli emulator``) so its CPU
is not counted as the services'. Remittances go in at a controlled rate first
(latency without queueing), then flat out (throughput). What the run measures comes
from outside the services: their ``/metrics`` (AWS calls), ``/proc`` (CPU, memory)
and the items' own timestamps.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.aws.clients import AwsClients
from shared.aws.dynamo import from_item
from shared.pipeline.assemble import state_machine_arn
from shared.provision.bootstrap import load_reference_data
from shared.settings import Settings
from tools.bench.procs import Emulator, Service, aws_calls, counter_sum
from tools.demo import generate_messages, reference_data
from tools.dev import DEV_ENV, dev_api_token
from tools.procs import free_port
from tools.stack import PORTS, bootstrap_stack
from tools.stack import StackNames as Names
from tools.webhook_receiver import Receiver

SERVICES = tuple(PORTS)
EMPTY_READS = "remitflow_aws_empty_reads_total"


def epoch(value: Any) -> float:
    """ISO-8601 string (``…Z``), datetime or epoch seconds → epoch seconds."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "n": 0}
    xs = sorted(values)

    def at(q: float) -> float:
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "n": len(xs)}


LEASE_WRITE = "dynamodb.UpdateItem(lease)"


def split_lease_writes(calls: dict[str, float],
                       metrics: dict[str, dict[tuple[tuple[str, str], ...], float]]
                       ) -> dict[str, float]:
    """Shard-lease writes apart from the job-item ``UpdateItem`` calls: a lease item is
    small (1 WRU), a job item is not (``remitflow_stream_lease_writes_total``)."""
    leases = counter_sum(metrics, "remitflow_stream_lease_writes_total")
    if leases:
        calls = dict(calls)
        calls["dynamodb.UpdateItem"] = max(0.0, calls.get("dynamodb.UpdateItem", 0.0) - leases)
        calls[LEASE_WRITE] = leases
    return calls


@dataclass
class Snapshot:
    """What the services' /metrics and /proc say at one moment."""

    at: float
    calls: dict[str, dict[str, float]]
    cpu_s: dict[str, float]
    emulator_cpu_s: float
    empty: dict[str, dict[str, float]] = field(default_factory=dict)   # empty polls, by service


@dataclass
class RunResult:
    label: str
    remittances: int
    sent_at: dict[str, float] = field(default_factory=dict)
    phase: dict[str, str] = field(default_factory=dict)
    before: Snapshot | None = None
    flat: Snapshot | None = None     # when the flat-out phase began
    after: Snapshot | None = None
    rss_samples: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    hwm_mib: dict[str, float] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


class Stack:
    """Emulator + resources + services for one design (batching on or off)."""

    def __init__(self, prefix: str, *, batching: bool = True, log_level: str = "INFO") -> None:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        self.prefix = prefix
        self.names = Names(prefix)
        self.emulator = Emulator(free_port(), dict(os.environ), name=f"{prefix}-emulator")
        self.env = {**os.environ, "AWS_ENDPOINT_URL": self.emulator.endpoint,
                    "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing", **DEV_ENV,
                    "REMITFLOW_PREFIX": prefix, "REMITFLOW_RECEIVE_WAIT_S": "1",
                    "REMITFLOW_API_TOKEN": dev_api_token()[0],
                    "REMITFLOW_LOG_LEVEL": log_level,
                    "REMITFLOW_BATCHING": "true" if batching else "false"}
        self.settings = Settings(prefix=prefix, aws_endpoint_url=self.emulator.endpoint,
                                 aws_region="us-east-1")
        self.services: dict[str, Service] = {}
        self.receiver: Receiver | None = None

    async def start(self) -> None:
        self.emulator.wait_ready()
        data = reference_data()
        secret = ""
        for payee in data["payees"]:
            if payee.get("webhook_secret"):
                secret = payee["webhook_secret"]
        self.receiver = Receiver(secret, port=0).start()
        for payee in data["payees"]:
            if payee.get("webhook_url"):
                payee["webhook_url"] = f"http://127.0.0.1:{self.receiver.port}/hooks/remittance"
        async with AwsClients(self.settings) as clients:
            await bootstrap_stack(self.settings, clients)
            await load_reference_data(clients, self.settings, data)
        for service in SERVICES:
            self.services[service] = Service(service, free_port(), self.env, self.prefix)
        deadline = time.monotonic() + 120
        while not all(s.ready() for s in self.services.values()):
            dead = [s.name for s in self.services.values() if not s.alive()]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"services not ready ({dead or 'timeout'}); see .dev-logs/")
            await asyncio.sleep(0.5)

    def stop_services(self) -> None:
        for service in self.services.values():
            service.stop()
        if self.receiver is not None:
            self.receiver.stop()
            self.receiver = None

    def stop(self) -> None:
        self.stop_services()
        self.emulator.stop()

    def snapshot(self) -> Snapshot:
        metrics = {n: s.metrics() for n, s in self.services.items()}
        return Snapshot(at=time.time(),
                        calls={n: split_lease_writes(aws_calls(m), m)
                               for n, m in metrics.items()},
                        cpu_s={n: s.cpu_s() for n, s in self.services.items()},
                        emulator_cpu_s=self.emulator.cpu_s(),
                        empty={n: aws_calls(m, EMPTY_READS) for n, m in metrics.items()})

    def sent_ok(self) -> float:
        return counter_sum(self.services["notification"].metrics(), "remitflow_tasks_total",
                           outcome="success")

    async def idle_rate(self, seconds: float) -> dict[str, Any]:
        """Time-proportional work while nothing is sent (empty receives, stream polls,
        lease renewals, sweeps): AWS calls per second, and CPU ms per second of each
        service and of the emulator."""
        first = self.snapshot()
        await asyncio.sleep(seconds)
        second = self.snapshot()
        dt = second.at - first.at
        by_service = {
            s: {op: round((v - first.calls[s].get(op, 0.0)) / dt, 3)
                for op, v in sorted(calls.items()) if v - first.calls[s].get(op, 0.0) > 0}
            for s, calls in second.calls.items()}
        return {"seconds": round(dt, 1),
                "aws_calls_per_s": {k: round(v / dt, 3)
                                    for k, v in sorted(diff_calls(first, second).items())},
                "aws_calls_per_s_by_service": by_service,
                "empty_reads_per_s": empty_rates(first, second),
                "cpu_ms_per_s": {k: round((second.cpu_s[k] - first.cpu_s[k]) * 1000 / dt, 2)
                                 for k in second.cpu_s},
                "emulator_cpu_ms_per_s": round(
                    (second.emulator_cpu_s - first.emulator_cpu_s) * 1000 / dt, 2)}

    async def run(self, n: int, *, rate: float, controlled: int, timeout_s: float,
                  tag: str) -> RunResult:
        """``controlled`` remittances at ``rate``/s, the rest flat out; wait for all SENT."""
        result = RunResult(label=tag, remittances=n)
        messages = [json.dumps(m) for m in generate_messages(n, prefix=f"REQ-{tag}")]
        ids = [json.loads(m)["request_id"] for m in messages]
        result.before = self.snapshot()
        base = await asyncio.to_thread(self.sent_ok)   # earlier runs on the same services
        async with AwsClients(self.settings) as clients:
            url = (await clients.sqs.get_queue_url(
                QueueName=self.names.remittance_events))["QueueUrl"]

            async def send(chunk: list[int], phase: str) -> None:
                now = time.time()
                for i in chunk:
                    result.sent_at[ids[i]] = now
                    result.phase[ids[i]] = phase
                await clients.sqs.send_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "MessageBody": messages[i]} for i in chunk])

            async def sender() -> None:
                started = time.monotonic()
                for k in range(controlled):  # one message per request, evenly spaced
                    await asyncio.sleep(max(0.0, started + k / rate - time.monotonic()))
                    await send([k], "controlled")
                while (await asyncio.to_thread(self.sent_ok)) - base < controlled:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                result.notes["flat_out_started"] = time.time()
                result.flat = await asyncio.to_thread(self.snapshot)
                chunks = [list(range(s, min(s + 10, n))) for s in range(controlled, n, 10)]
                for group in range(0, len(chunks), 8):
                    await asyncio.gather(*(send(c, "flat") for c in chunks[group:group + 8]))
                result.notes["flat_out_sent"] = time.time()

            task = asyncio.create_task(sender())
            deadline = time.monotonic() + timeout_s
            next_rss = 0.0
            while True:
                done = await asyncio.to_thread(self.sent_ok) - base
                if done >= next_rss:
                    result.rss_samples.append((int(done), {
                        k: round(s.rss_mib(), 1) for k, s in self.services.items()}))
                    next_rss = done + max(1, n // 10)
                if (task.done() and done >= n) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            await task
            result.after = self.snapshot()
            result.rss_samples.append((int(await asyncio.to_thread(self.sent_ok) - base), {
                k: round(s.rss_mib(), 1) for k, s in self.services.items()}))
            result.hwm_mib = {k: round(s.hwm_mib(), 1) for k, s in self.services.items()}
            result.items = await self._collect(clients, set(ids), timeout_s=60)
            result.notes["transitions"] = await self._transitions(clients, ids)
            result.notes["item_kb"] = {
                "remittances": await _item_kb(clients, self.names.remittances),
                "notifications": await _item_kb(clients, self.names.notifications)}
        return result

    async def _collect(self, clients: AwsClients, ids: set[str],
                       timeout_s: float) -> dict[str, dict[str, Any]]:
        """Both items and the enrichment execution's start per request id."""
        deadline = time.monotonic() + timeout_s
        while True:
            rem = await _scan(clients, self.names.remittances, ids)
            notif = await _scan(clients, self.names.notifications, ids)
            sent = sum(1 for r in notif.values() if r.get("status") == "SENT")
            if sent >= len(ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        starts: dict[str, float] = {}
        arn = await state_machine_arn(clients, self.names.enrichment_sm)
        async for page in clients.sfn.get_paginator("list_executions").paginate(
                stateMachineArn=arn):
            for ex in page["executions"]:
                starts[ex["name"]] = epoch(ex["startDate"])
        out: dict[str, dict[str, Any]] = {}
        for rid in ids:
            r, nt = rem.get(rid, {}), notif.get(rid, {})
            out[rid] = {"remittance": r.get("status"), "notification": nt.get("status"),
                        "created_at": r.get("created_at"), "completed_at": r.get("updated_at"),
                        "notification_created_at": nt.get("created_at"),
                        "sent_at": nt.get("updated_at"),
                        "started_at": starts.get(str(r.get("execution_name", "")))}
        return out

    async def _transitions(self, clients: AwsClients, sample: list[str]) -> dict[str, Any]:
        """StateEntered events and emulator-side task calls over every execution of the
        given remittances (every attempt), per remittance."""
        entered: Counter[str] = Counter()
        inner: Counter[str] = Counter()
        attempts: Counter[str] = Counter()
        execs = 0
        wanted = set(sample)
        for machine in (self.names.enrichment_sm, self.names.notification_sm):
            arn = await state_machine_arn(clients, machine)
            names: list[str] = []
            async for page in clients.sfn.get_paginator("list_executions").paginate(
                    stateMachineArn=arn):
                names += [e["executionArn"] for e in page["executions"]
                          if e["name"].rsplit("-a", 1)[0] in wanted]
            for ex_arn in names:
                attempts[f"{machine.rsplit('-', 1)[-1]}.{ex_arn.rsplit('-a', 1)[-1]}"] += 1
                try:
                    hist = await clients.sfn.get_execution_history(
                        executionArn=ex_arn, maxResults=1000)
                except Exception:
                    continue
                execs += 1
                for event in hist["events"]:
                    kind = event["type"]
                    if kind.endswith("StateEntered"):
                        entered[machine] += 1
                    if kind == "TaskScheduled":
                        d = event.get("taskScheduledEventDetails", {})
                        op = d.get("resource", "?").split(".")[0]
                        inner[f"{d.get('resourceType', '?')}.{op}"] += 1
        per = max(1, len(sample))
        return {"sample": len(sample), "executions": execs, "attempts": dict(attempts),
                "state_entered_per_remittance": round(sum(entered.values()) / per, 2),
                "by_machine": {k: round(v / per, 2) for k, v in entered.items()},
                "emulator_task_calls": {k: round(v / per, 2) for k, v in inner.items()}}


def diff_calls(a: Snapshot, b: Snapshot, *, empty: bool = False) -> dict[str, float]:
    """Calls (or, with ``empty``, empty polls) between two snapshots, all services."""
    out: defaultdict[str, float] = defaultdict(float)
    for service, calls in (b.empty if empty else b.calls).items():
        before = (a.empty if empty else a.calls).get(service, {})
        for op, v in calls.items():
            delta = v - before.get(op, 0.0)
            if delta:
                out[op] += delta
    return dict(out)


def empty_rates(a: Snapshot, b: Snapshot) -> dict[str, float]:
    """Empty polls per second between two snapshots, by ``service.Operation``."""
    dt = max(1e-9, b.at - a.at)
    return {k: round(v / dt, 3) for k, v in sorted(diff_calls(a, b, empty=True).items())}


async def _scan(clients: AwsClients, table: str, ids: set[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    async for page in clients.dynamodb.get_paginator("scan").paginate(
            TableName=table, ProjectionExpression="request_id, #s, created_at, updated_at, "
            "execution_name", ExpressionAttributeNames={"#s": "status"}):
        for item in page.get("Items", []):
            row = from_item(item)
            if row["request_id"] in ids:
                out[row["request_id"]] = row
    return out


async def _item_kb(clients: AwsClients, table: str) -> float:
    """Average stored size of a few finished items (attribute names + values), in KB."""
    items = (await clients.dynamodb.scan(TableName=table, Limit=5))["Items"]
    sizes = [sum(len(k) + len(json.dumps(v, default=str)) for k, v in from_item(i).items())
             for i in items]
    return round(sum(sizes) / max(1, len(sizes)) / 1024, 2)
