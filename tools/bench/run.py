"""``make bench``: the whole pipeline, measured (see ``docs/capacity.md``).

1. Batched design (the services as shipped): emulator + three service processes; an
   idle window (time-proportional work per second); ``--count`` remittances, the first
   ``--controlled`` at ``--rate``/s (latency), the rest flat out (capacity: the
   pipeline's rate and the emulator's CPU per remittance, whose inverse is the
   emulator's limit); then ``--steady-count`` at ``--steady-share`` of that capacity
   (the per-remittance figures: calls, CPU net of idle, transitions, attempts, cost).
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
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from shared.aws.emulator import CACHES_ENV
from shared.logs import configure_logging
from tools.bench import profile
from tools.bench.cost import lambda_compute
from tools.bench.harness import Stack
from tools.bench.report import (
    analyse,
    capacity,
    latency,
    per_remittance,
    spread,
    summary,
    targets,
)

RESULTS = Path(__file__).with_name("results.json")
PROFILES = Path(__file__).with_name("profiles")


async def batched(args: argparse.Namespace) -> dict[str, Any]:
    stack = Stack("bench", log_level=args.log_level)
    try:
        print("bench: starting emulator and services (batched design)…", flush=True)
        await stack.start()
        idle = await stack.idle_rate(args.idle_s)
        print(f"bench: sending {args.count} remittances ({args.controlled} at {args.rate}/s, "
              "the rest flat out)…", flush=True)
        pids = {**{n: s.pid for n, s in stack.services.items()}, "emulator": stack.emulator.pid}

        async def sample() -> list[Any]:
            # into the flat-out phase: after the controlled sends, for --profile-s
            await asyncio.sleep(args.controlled / args.rate + 10)
            return profile.start(pids, args.profile_s, PROFILES)

        profiling = asyncio.create_task(sample()) if args.profile_s else None
        run = await stack.run(args.count, rate=args.rate, controlled=args.controlled,
                              timeout_s=args.timeout_s, tag="BENCH")
        out = capacity(run, idle)
        if profiling is not None:
            out["profile"] = await asyncio.to_thread(profile.finish, await profiling)
            out["profile"]["note"] = (f"py-spy --rate 50 for {args.profile_s:.0f} s in the "
                                      "flat-out phase; shares of samples")
        out["latency_ms"] = latency(run, "controlled")
        out["latency_ms_flat_out"] = latency(run, "flat")
        out["controlled_rate"] = args.rate
        out["idle"] = idle
        if args.steady_count:
            rate = round(args.steady_share * out["pipeline_rps"], 2)
            print(f"bench: steady load, {args.steady_count} remittances at {rate}/s "
                  f"({args.steady_share:.0%} of the measured capacity)…", flush=True)
            steady = await stack.run(args.steady_count, rate=rate,
                                     controlled=args.steady_count, timeout_s=args.timeout_s,
                                     tag="STEADY")
            out["steady"] = per_remittance(steady, idle)
            out["steady"]["offered_rps"] = rate
            out["steady"]["latency_ms"] = latency(steady, "controlled")
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


def emulator_ab(args: argparse.Namespace, cached: list[dict[str, Any]]) -> dict[str, Any]:
    """The same batched run on moto as shipped (caches off), beside the cached runs."""
    print("bench: once more with the emulator's caches off (moto as shipped)", flush=True)
    os.environ[CACHES_ENV] = "off"
    try:
        plain = asyncio.run(batched(args))
    finally:
        os.environ.pop(CACHES_ENV, None)
    keys = ("emulator_cpu_ms_per_remittance_flat", "emulator_limit_rps", "pipeline_rps",
            "utilisation")
    on = {k: statistics.median(float(r[k]) for r in cached) for k in keys}
    off = {k: float(plain[k]) for k in keys}
    return {"off": off, "on": on,
            "cpu_ratio_off_to_on": round(off[keys[0]] / max(1e-9, on[keys[0]]), 2),
            "limit_ratio_on_to_off": round(on[keys[1]] / max(1e-9, off[keys[1]]), 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=1000, help="remittances, batched design")
    p.add_argument("--baseline-count", type=int, default=200,
                   help="remittances, Lambda-equivalent baseline (0 skips it)")
    p.add_argument("--rate", type=float, default=2.0,
                   help="controlled send rate (remittances/s) for the latency phase")
    p.add_argument("--controlled", type=int, default=None,
                   help="remittances sent at --rate before going flat out (default N/10, "
                        "at least 30)")
    p.add_argument("--steady-count", type=int, default=None,
                   help="remittances at a steady load after the flat-out run, for the "
                        "per-remittance figures (default N/3; 0 skips it)")
    p.add_argument("--steady-share", type=float, default=0.8,
                   help="the steady load as a share of the measured capacity")
    p.add_argument("--idle-s", type=float, default=10.0,
                   help="idle window for the time-proportional work")
    p.add_argument("--profile-s", type=float, default=30.0,
                   help="py-spy each process for this long in the flat-out phase (0: no)")
    p.add_argument("--repeat", type=int, default=3,
                   help="repetitions of the batched design (figures with min/median/max)")
    p.add_argument("--timeout-s", type=float, default=900.0)
    p.add_argument("--log-level", default="INFO", help="services' REMITFLOW_LOG_LEVEL")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--emulator-ab", action="store_true",
                   help="also run once with the emulator's caches off "
                        "(moto as shipped: docs/emulator.md) and print both, same run")
    args = p.parse_args(argv)
    if args.controlled is None:
        args.controlled = max(30, args.count // 10)
    args.controlled = min(args.controlled, args.count)
    if args.steady_count is None:
        args.steady_count = max(30, args.count // 3)
    configure_logging("WARNING", "console")
    logging.getLogger("aiobotocore").setLevel(logging.ERROR)
    started = time.monotonic()
    runs = []
    for n in range(args.repeat):
        if args.repeat > 1:
            print(f"bench: repetition {n + 1} of {args.repeat}", flush=True)
        one = asyncio.run(batched(args))
        one["loadavg"] = os.getloadavg()
        runs.append(one)
    result = runs[-1]
    result["repetitions"] = spread(runs)
    if args.emulator_ab:
        result["emulator_sfn_cache"] = emulator_ab(args, runs)
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
                         "bench_seconds": round(time.monotonic() - started, 1),
                         "moto": version("moto"), "python": sys.version.split()[0]}
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(summary(result))
    print(f"bench: wrote {args.out} in {result['machine']['bench_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
