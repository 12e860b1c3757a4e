"""``make surge``: offer several times the sustainable rate for a while, then stop.

Proves the back-pressure of ``shared/pipeline/admission.py`` (``docs/capacity.md``,
"Holding a surge"): the backlog waits ``RECEIVED`` in the job table instead of in
the task queue, so no task times out and every remittance finishes as attempt 1.

Reports, from the items and executions (nothing inside the services is asked):
the most jobs waiting ``RECEIVED`` at once (``created_at`` ≤ t < the execution's
start), the deepest task queue seen (sampled every second), the drain time (last
send → last ``SENT``), the attempt distribution of both job kinds, executions
beyond attempt 1, and end-to-end latency of the surge's remittances and of a few
sent at 2/s after it drained. Writes ``tools/bench/surge.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from shared.aws.clients import AwsClients
from shared.aws.dynamo import from_item
from shared.logs import configure_logging
from shared.pipeline.assemble import state_machine_arn
from tools.bench.harness import Stack, epoch, percentiles
from tools.demo import generate_messages

OUT = Path(__file__).with_name("surge.json")


async def _items(clients: AwsClients, table: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    async for page in clients.dynamodb.get_paginator("scan").paginate(
            TableName=table, ProjectionExpression="request_id, #s, created_at, updated_at, "
            "attempt", ExpressionAttributeNames={"#s": "status"}):
        for item in page.get("Items", []):
            row = from_item(item)
            out[str(row["request_id"])] = row
    return out


async def _executions(clients: AwsClients, machine: str) -> dict[str, float]:
    arn = await state_machine_arn(clients, machine)
    out: dict[str, float] = {}
    async for page in clients.sfn.get_paginator("list_executions").paginate(
            stateMachineArn=arn):
        for ex in page["executions"]:
            out[ex["name"]] = epoch(ex["startDate"])
    return out


async def surge(args: argparse.Namespace) -> dict[str, Any]:
    stack = Stack("surge", log_level=args.log_level)
    extra = {"REMITFLOW_TASK_BACKLOG_MAX": str(args.backlog_max)}
    stack.env.update(extra)
    try:
        await stack.start()
        n = int(args.rate * args.seconds)
        msgs = generate_messages(n + args.after, prefix="REQ-SURGE")
        ids = [m["request_id"] for m in msgs]
        sent_at: dict[str, float] = {}
        depths: list[tuple[float, int, int]] = []
        async with AwsClients(stack.settings) as clients:
            sqs = clients.sqs
            url = (await sqs.get_queue_url(QueueName=stack.names.remittance_events))["QueueUrl"]
            tq = [(await sqs.get_queue_url(QueueName=q))["QueueUrl"] for q in
                  (stack.names.enrichment_tasks, stack.names.notification_tasks)]

            async def send(rng: range) -> None:
                now = time.time()
                for i in rng:
                    sent_at[ids[i]] = now
                await sqs.send_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "MessageBody": json.dumps(msgs[i])} for i in rng])

            async def sample(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    d = []
                    for q in tq:
                        a = await sqs.get_queue_attributes(
                            QueueUrl=q, AttributeNames=["ApproximateNumberOfMessages"])
                        d.append(int(a["Attributes"]["ApproximateNumberOfMessages"]))
                    depths.append((time.time(), d[0], d[1]))
                    await asyncio.sleep(1.0)

            stop = asyncio.Event()
            sampler = asyncio.create_task(sample(stop))
            print(f"surge: {n} remittances at {args.rate}/s for {args.seconds:.0f} s "
                  f"(REMITFLOW_TASK_BACKLOG_MAX={args.backlog_max})…", flush=True)
            t0 = time.monotonic()
            for k, start in enumerate(range(0, n, 10)):
                await asyncio.sleep(max(0.0, t0 + k * 10 / args.rate - time.monotonic()))
                await send(range(start, min(start + 10, n)))
            surge_end = time.time()
            deadline = time.monotonic() + args.timeout_s
            while time.monotonic() < deadline:
                notif = await _items(clients, stack.names.notifications)
                if sum(1 for r in notif.values() if r.get("status") == "SENT") >= n:
                    break
                await asyncio.sleep(2.0)
            drained = time.time()
            for k in range(args.after):   # after the surge: 2/s, latency back to normal?
                await asyncio.sleep(0.5)
                await send(range(n + k, n + k + 1))
            while time.monotonic() < deadline:
                notif = await _items(clients, stack.names.notifications)
                if sum(1 for r in notif.values() if r.get("status") == "SENT") >= n + args.after:
                    break
                await asyncio.sleep(1.0)
            stop.set()
            await sampler
            rem = await _items(clients, stack.names.remittances)
            notif = await _items(clients, stack.names.notifications)
            starts = await _executions(clients, stack.names.enrichment_sm)
            nstarts = await _executions(clients, stack.names.notification_sm)
        return _report(args, ids[:n], ids[n:], sent_at, rem, notif, starts, nstarts, depths,
                       surge_end, drained)
    finally:
        stack.stop()


def _report(args: argparse.Namespace, surge_ids: list[str], after_ids: list[str],
            sent_at: dict[str, float], rem: dict[str, dict[str, Any]],
            notif: dict[str, dict[str, Any]], starts: dict[str, float],
            nstarts: dict[str, float], depths: list[tuple[float, int, int]],
            surge_end: float, drained: float) -> dict[str, Any]:
    events: list[tuple[float, int]] = []
    for rid in surge_ids:
        r = rem.get(rid, {})
        if r.get("created_at"):
            events.append((epoch(r["created_at"]), 1))
            if f"{rid}-a1" in starts:
                events.append((starts[f"{rid}-a1"], -1))
    waiting = peak = 0
    for _, step in sorted(events):
        waiting += step
        peak = max(peak, waiting)

    def e2e(ids: list[str]) -> dict[str, float]:
        return percentiles([epoch(notif[r]["updated_at"]) - sent_at[r] for r in ids
                            if notif.get(r, {}).get("status") == "SENT"])

    half = len(surge_ids) // 2
    sent_times = [epoch(notif[r]["updated_at"]) for r in surge_ids
                  if notif.get(r, {}).get("status") == "SENT"]
    every = [*starts, *nstarts]
    return {
        "offered_rps": args.rate, "seconds": args.seconds, "remittances": len(surge_ids),
        "task_backlog_max": args.backlog_max,
        "outcomes": dict(Counter(f"{rem.get(r, {}).get('status')}/"
                                 f"{notif.get(r, {}).get('status')}" for r in surge_ids)),
        "max_received_backlog": peak,
        "max_task_queue_depth": {"enrichment": max((d[1] for d in depths), default=0),
                                 "notification": max((d[2] for d in depths), default=0)},
        "drain_s": round(max(sent_times, default=surge_end) - surge_end, 1),
        "pipeline_rps_during": round(len(sent_times) / max(1e-9, max(sent_times, default=0)
                                                           - min(sent_at.values())), 2),
        "attempts": {"remittances": dict(Counter(int(rem.get(r, {}).get("attempt", 0))
                                                 for r in surge_ids)),
                     "notifications": dict(Counter(int(notif.get(r, {}).get("attempt", 0))
                                                   for r in surge_ids))},
        "executions_beyond_attempt_1": sorted(e for e in every if not e.endswith("-a1")),
        "latency_ms": {"first_half": e2e(surge_ids[:half]), "second_half": e2e(surge_ids[half:]),
                       "after_drain_2_per_s": e2e(after_ids)},
        "drained_at_offset_s": round(drained - min(sent_at.values()), 1),
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="surge", description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=10.0,
                   help="offered remittances/s (default about 3x what `make bench` sustains here)")
    p.add_argument("--seconds", type=float, default=120.0, help="how long the surge lasts")
    p.add_argument("--after", type=int, default=20, help="remittances at 2/s after the drain")
    p.add_argument("--backlog-max", type=int, default=32,
                   help="REMITFLOW_TASK_BACKLOG_MAX for the services (0: no back-pressure)")
    p.add_argument("--timeout-s", type=float, default=1800.0)
    p.add_argument("--log-level", default="WARNING")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    configure_logging("WARNING", "console")
    logging.getLogger("aiobotocore").setLevel(logging.ERROR)
    result = asyncio.run(surge(args))
    result["command"] = " ".join(["python -m tools.bench.surge", *(argv or sys.argv[1:])])
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
