"""What tracing costs: service CPU per remittance with OTLP export on and off.

Each run is a fresh stack from ``tools/bench/harness.py`` (emulator process,
bootstrap, the three services as processes) that takes ``N`` remittances flat out
and waits until every notification is sent. CPU is read from ``/proc`` for the
service processes only (user + system, emulator excluded) between the first
message and the last notification, so polling while the run lasts is included in
both figures alike. With tracing on, the services export OTLP/HTTP to an in-process
collector stub (``tools/otlp_receiver.py``, decoding in this process, not theirs).
Runs alternate off/on so drift on a shared machine hits both.

    python -m tools.tracebench --n 100 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import uuid

from tools.bench.harness import SERVICES, Stack
from tools.otlp_receiver import OtlpReceiver

OTEL_ON = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "1000"}


async def one_run(traced: bool, n: int, collector: OtlpReceiver) -> dict[str, float]:
    stack = Stack("tb" + uuid.uuid4().hex[:8], log_level="WARNING")
    for key in [k for k in stack.env if k.startswith("OTEL_")]:
        del stack.env[key]
    if traced:
        stack.env.update(OTEL_ON, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint)
    spans_before = len(collector.snapshot())
    try:
        await stack.start()
        result = await stack.run(n, rate=50.0, controlled=0, timeout_s=600,
                                 tag="on" if traced else "off")
    finally:
        stack.stop()
    assert result.before is not None and result.after is not None
    cpu = sum(result.after.cpu_s[s] - result.before.cpu_s[s] for s in SERVICES)
    sent = sum(1 for item in result.items.values() if item.get("notification") == "SENT")
    return {"cpu_ms_per_remittance": round(cpu / n * 1000, 2), "sent": sent,
            "spans_per_remittance": round((len(collector.snapshot()) - spans_before) / n, 1)}


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


async def main(n: int, runs: int) -> dict[str, object]:
    collector = OtlpReceiver().start()
    out: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    try:
        for _ in range(runs):
            for label, traced in (("off", False), ("on", True)):
                out[label].append(await one_run(traced, n, collector))
                print(label, out[label][-1], flush=True)
    finally:
        collector.stop()
    report: dict[str, object] = {"n": n, "runs": runs, "raw": out}
    for label in out:
        report[label] = summary([r["cpu_ms_per_remittance"] for r in out[label]])
    return report


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.n, args.runs)), indent=2))


if __name__ == "__main__":
    cli()
