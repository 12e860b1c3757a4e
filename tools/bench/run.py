"""``make bench``: the whole pipeline, measured (see ``docs/capacity.md``).

1. Batched design (the services as shipped): emulator + three service processes,
   ``--count`` remittances, the first ``--controlled`` at ``--rate``/s (latency), the
   rest flat out (throughput). Then, services stopped, the emulator's own ceiling for
   the same call mix and the SDK's CPU floor per call (:mod:`tools.bench.ceiling`).
2. Lambda-equivalent baseline: a fresh emulator and services with
   ``REMITFLOW_BATCHING=false``, ``--baseline-count`` remittances flat out.

Writes ``bench/results.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from shared.logs import configure_logging
from tools.bench.ceiling import measure
from tools.bench.cost import lambda_compute
from tools.bench.harness import Stack
from tools.bench.report import analyse, latency, summary, targets

RESULTS = Path(__file__).with_name("results.json")


async def batched(args: argparse.Namespace) -> dict[str, Any]:
    stack = Stack("bench", log_level=args.log_level)
    try:
        print("bench: starting emulator and services (batched design)…", flush=True)
        await stack.start()
        idle = await stack.idle_rate(args.idle_s)
        print(f"bench: sending {args.count} remittances ({args.controlled} at {args.rate}/s, "
              "the rest flat out)…", flush=True)
        run = await stack.run(args.count, rate=args.rate, controlled=args.controlled,
                              timeout_s=args.timeout_s, tag="BENCH")
        out = analyse(run)
        out["idle_aws_calls_per_s"] = idle
        out["latency_ms"] = latency(run, "controlled")
        out["latency_ms_flat_out"] = latency(run, "flat")
        out["controlled_rate"] = args.rate
        stack.stop_services()
        mix = dict(out["aws_calls_per_remittance"])
        mix["sqs.SendMessageBatch"] = mix.get("sqs.SendMessageBatch", 0.0) + 0.1
        print(f"bench: replaying the call mix ({sum(mix.values()):.1f} calls/remittance) "
              f"against the emulator for {args.ceiling_s:.0f} s…", flush=True)
        ceiling = await measure(stack.emulator.endpoint, stack.prefix, mix,
                                seconds=args.ceiling_s, concurrency=args.concurrency,
                                emulator_cpu=stack.emulator.cpu_s)
        ceiling["mix"] = {k: round(v, 3) for k, v in sorted(mix.items())}
        ceiling["note"] = ("mix = the services' calls per remittance (their /metrics) + the "
                           "partner's SendMessageBatch (1/10 per remittance); each replayed "
                           "StartExecution starts a copy of the workflow's success path "
                           "without the callback wait, whose executions make the emulator-side "
                           "calls (workflow_calls_per_remittance: task SendMessage, SNS "
                           "Publish, DynamoDB UpdateItem) inside the emulator as in the "
                           "pipeline; the clock stops when those executions have finished")
        out["emulator_ceiling"] = ceiling
        out["emulator_ceiling_rps"] = ceiling["ceiling_rps"]
        out["ratio"] = round(out["pipeline_rps"] / max(1e-9, ceiling["ceiling_rps"]), 2)
        # How busy the services keep the emulator, relative to the bare replay: ~1 means
        # the emulator (not the services) limits the pipeline.
        out["emulator_busy_vs_replay"] = round(
            out["pipeline_rps"] * out["emulator_cpu_ms_per_remittance"]
            / max(1e-9, ceiling["ceiling_rps"] * ceiling["emulator_cpu_ms_per_remittance"]), 2)
        per_call = ceiling["client_cpu_ms_per_call"]
        out["sdk_floor_cpu_ms_per_remittance"] = round(
            out["aws_calls_per_remittance_total"] * per_call, 2)
        out["sdk_floor_detail"] = {
            "calls_per_remittance": out["aws_calls_per_remittance_total"],
            "client_cpu_ms_per_call": per_call,
            "how": "time.process_time() of the bench process over the ceiling replay (bare "
                   "aiobotocore clients, same call mix) / calls made"}
        return out
    finally:
        stack.stop()


async def baseline(args: argparse.Namespace) -> dict[str, Any]:
    stack = Stack("benchlam", batching=False, log_level=args.log_level)
    try:
        print(f"bench: Lambda-equivalent baseline (REMITFLOW_BATCHING=false), "
              f"{args.baseline_count} remittances…", flush=True)
        await stack.start()
        run = await stack.run(args.baseline_count, rate=args.rate, controlled=0,
                              timeout_s=args.timeout_s, tag="BASE")
        out = analyse(run)
        out["latency_ms_flat_out"] = latency(run, "flat")
        # One invocation per message for the two intakes and two task workers; stream
        # batches are amortised. Billed duration is at least the CPU measured here.
        out["lambda_compute_usd_per_million_lower_bound"] = lambda_compute(
            4, out["worker_cpu_ms_per_remittance"]["total"])
        return out
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=1000, help="remittances, batched design")
    p.add_argument("--baseline-count", type=int, default=200,
                   help="remittances, Lambda-equivalent baseline (0 skips it)")
    p.add_argument("--rate", type=float, default=2.0,
                   help="controlled send rate (remittances/s) for the latency phase")
    p.add_argument("--controlled", type=int, default=None,
                   help="remittances sent at --rate before going flat out (default N/20)")
    p.add_argument("--ceiling-s", type=float, default=15.0, help="ceiling replay duration (s)")
    p.add_argument("--concurrency", type=int, default=32, help="ceiling replay concurrency")
    p.add_argument("--idle-s", type=float, default=5.0, help="idle window for polling rates")
    p.add_argument("--timeout-s", type=float, default=900.0)
    p.add_argument("--log-level", default="INFO", help="services' REMITFLOW_LOG_LEVEL")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.controlled is None:
        args.controlled = max(10, args.count // 20)
    args.controlled = min(args.controlled, args.count)
    configure_logging("WARNING", "console")
    logging.getLogger("aiobotocore").setLevel(logging.ERROR)
    started = time.monotonic()
    result = asyncio.run(batched(args))
    result["command"] = " ".join(["python -m tools.bench.run", *(argv or sys.argv[1:])])
    if args.baseline_count > 0:
        base = asyncio.run(baseline(args))
        result["baseline"] = base
        b, m = base["cost_usd_per_million"], result["cost_usd_per_million"]
        result["baseline_vs_batched"] = {
            "requests": round(b["billable_requests_per_remittance"]
                              / m["billable_requests_per_remittance"], 2),
            "aws_calls": round(base["aws_calls_per_remittance_total"]
                               / result["aws_calls_per_remittance_total"], 2),
            "cpu": round(base["worker_cpu_ms_per_remittance"]["total"]
                         / result["worker_cpu_ms_per_remittance"]["total"], 2),
            "cost": round(b["total"] / m["total"], 2),
            "throughput": round(base["pipeline_rps"] / result["pipeline_rps"], 2),
            "note": "per remittance; the baseline's AWS bill excludes Lambda compute "
                    "(lambda_compute_usd_per_million_lower_bound) and its stream reads would "
                    "be free under a Lambda trigger"}
    result["targets"] = targets(result)
    result["machine"] = {"cpus": os.cpu_count(), "loadavg": os.getloadavg(),
                         "bench_seconds": round(time.monotonic() - started, 1)}
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(summary(result))
    print(f"bench: wrote {args.out} in {result['machine']['bench_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
