"""Turning a :class:`~tools.bench.harness.RunResult` into the figures of ``bench/results.json``."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tools.bench.cost import bill, normalise
from tools.bench.harness import RunResult, epoch, percentiles

TARGETS = {"ratio": 0.8, "cpu_over_floor": 1.5, "billable_requests": 16,
           "state_transitions": 8, "rss_mib": 150}


def latency(result: RunResult, phase: str) -> dict[str, dict[str, float]]:
    """End-to-end and per-stage percentiles (ms) for the remittances sent in ``phase``."""
    stages: dict[str, list[float]] = {k: [] for k in (
        "end_to_end", "intake", "start", "task", "notification", "notification_intake")}
    for rid, it in result.items.items():
        if result.phase.get(rid) != phase or it.get("notification") != "SENT":
            continue
        sent = result.sent_at[rid]
        created, completed = epoch(it["created_at"]), epoch(it["completed_at"])
        done = epoch(it["sent_at"])
        stages["end_to_end"].append(done - sent)
        stages["intake"].append(created - sent)
        if it.get("started_at"):
            stages["start"].append(float(it["started_at"]) - created)
            stages["task"].append(completed - float(it["started_at"]))
        stages["notification"].append(done - completed)
        if it.get("notification_created_at"):
            stages["notification_intake"].append(epoch(it["notification_created_at"]) - completed)
    return {k: percentiles(v) for k, v in stages.items()}


def throughput(result: RunResult) -> dict[str, float]:
    """Remittances/s flat out: flat-phase count / (last SENT - first flat send)."""
    flat = [rid for rid, ph in result.phase.items() if ph == "flat"]
    ids = flat or list(result.phase)
    start = min(result.sent_at[r] for r in ids)
    ends = [epoch(result.items[r]["sent_at"]) for r in ids if result.items[r].get("sent_at")]
    all_ends = [epoch(i["sent_at"]) for i in result.items.values() if i.get("sent_at")]
    first = min(result.sent_at.values())
    return {"pipeline_rps": round(len(ends) / max(1e-9, max(ends) - start), 2),
            "overall_rps": round(len(all_ends) / max(1e-9, max(all_ends) - first), 2),
            "flat_out_remittances": len(ends)}


def analyse(result: RunResult) -> dict[str, Any]:
    """Calls, CPU, memory, transitions and cost per remittance for one run."""
    assert result.before is not None and result.after is not None
    n = result.remittances
    by_service: dict[str, dict[str, float]] = {}
    merged: Counter[str] = Counter()
    for service, calls in result.after.calls.items():
        before = result.before.calls.get(service, {})
        delta = {op: (v - before.get(op, 0.0)) / n for op, v in calls.items()
                 if v - before.get(op, 0.0) > 0}
        by_service[service] = {k: round(v, 3) for k, v in sorted(delta.items())}
        merged.update(delta)
    cpu = {s: round((result.after.cpu_s[s] - result.before.cpu_s[s]) * 1000 / n, 2)
           for s in result.after.cpu_s}
    cpu["total"] = round(sum(cpu.values()), 2)
    trans = result.notes.get("transitions", {})
    workflow_calls = {normalise(k): v for k, v in trans.get("emulator_task_calls", {}).items()}
    transitions = float(trans.get("state_entered_per_remittance", 0.0))
    cost = bill(by_service, workflow_calls, transitions, result.notes.get("item_kb", {}))
    statuses = Counter(f"{i.get('remittance')}/{i.get('notification')}"
                       for i in result.items.values())
    first_rss = next((s for done, s in result.rss_samples if done >= n // 5),
                     result.rss_samples[0][1])
    last_rss = result.rss_samples[-1][1]
    return {
        "remittances": n,
        "outcomes": dict(statuses),
        **throughput(result),
        "aws_calls_per_remittance": {k: round(v, 3) for k, v in sorted(merged.items())},
        "aws_calls_per_remittance_total": round(sum(merged.values()), 2),
        "aws_calls_per_remittance_by_service": by_service,
        "workflow_calls_per_remittance": workflow_calls,
        "state_transitions_per_remittance": transitions,
        "state_transitions_detail": trans,
        "worker_cpu_ms_per_remittance": cpu,
        "emulator_cpu_ms_per_remittance": round(
            (result.after.emulator_cpu_s - result.before.emulator_cpu_s) * 1000 / n, 1),
        "rss_mib": result.hwm_mib,
        "rss_growth_mib": {k: round(last_rss[k] - first_rss[k], 1) for k in last_rss},
        "rss_samples_mib": [{"sent": d, **s} for d, s in result.rss_samples],
        "item_kb": result.notes.get("item_kb", {}),
        "cost_usd_per_million": cost,
        "run_seconds": round(result.after.at - result.before.at, 1),
    }


def targets(r: dict[str, Any]) -> dict[str, Any]:
    cost = r["cost_usd_per_million"]
    over = r["worker_cpu_ms_per_remittance"]["total"] / max(
        1e-9, r["sdk_floor_cpu_ms_per_remittance"])
    growth = max(r["rss_growth_mib"].values()) if r["rss_growth_mib"] else 0.0
    rows = {
        "ratio": (r["ratio"], ">=", TARGETS["ratio"]),
        "worker_cpu_over_sdk_floor": (round(over, 2), "<=", TARGETS["cpu_over_floor"]),
        "billable_requests_per_remittance": (cost["billable_requests_per_remittance"], "<=",
                                             TARGETS["billable_requests"]),
        "state_transitions_per_remittance": (r["state_transitions_per_remittance"], "<=",
                                             TARGETS["state_transitions"]),
        "peak_rss_mib": (max(r["rss_mib"].values()), "<=", TARGETS["rss_mib"]),
        "rss_growth_mib": (growth, "<=", 5.0),
    }
    return {k: {"value": v, "target": f"{op} {t}",
                "met": bool(v >= t if op == ">=" else v <= t)} for k, (v, op, t) in rows.items()}


def summary(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    cost = r["cost_usd_per_million"]
    cpu = r["worker_cpu_ms_per_remittance"]
    lines = [
        f"remitflow bench: {r['remittances']} remittances  ({r['command']})",
        f"  pipeline        {r['pipeline_rps']:.2f} remittances/s flat out "
        f"(emulator ceiling {r['emulator_ceiling_rps']:.2f}/s for the same call mix, "
        f"ratio {r['ratio']:.2f})",
        "  latency ms      " + "  ".join(
            f"{k} p50 {v['p50']:.0f} p95 {v['p95']:.0f} p99 {v['p99']:.0f}"
            for k, v in lat.items() if k == "end_to_end") + f"  (at {r['controlled_rate']}/s)",
        "    stages p50    " + "  ".join(f"{k} {v['p50']:.0f}" for k, v in lat.items()
                                         if k != "end_to_end")
        + "  (notification = notification_intake + its start + task)",
        f"  AWS calls       {r['aws_calls_per_remittance_total']:.1f}/remittance by the "
        f"services (+{sum(r['workflow_calls_per_remittance'].values()):.0f} by the "
        f"workflows); billable {cost['billable_requests_per_remittance']:.1f}; "
        f"{r['state_transitions_per_remittance']:.0f} state transitions",
        f"  worker CPU      {cpu['total']:.1f} ms/remittance (enrichment "
        f"{cpu['enrichment']:.1f}, notification {cpu['notification']:.1f}, sweeper "
        f"{cpu['sweeper']:.1f}); SDK floor {r['sdk_floor_cpu_ms_per_remittance']:.1f} ms",
        "  peak RSS MiB    " + ", ".join(f"{k} {v:.0f}" for k, v in r["rss_mib"].items())
        + "  growth " + ", ".join(f"{k} {v:+.1f}" for k, v in r["rss_growth_mib"].items()),
        f"  cost            ${cost['total']:.2f} per million remittances ("
        + ", ".join(f"{k} ${v:.2f}" for k, v in cost["breakdown"].items() if v) + ")",
    ]
    if "baseline" in r:
        b = r["baseline"]
        x = r["baseline_vs_batched"]
        bc = b["cost_usd_per_million"]
        lines.append(
            f"  Lambda-like     batching off, {b['remittances']} remittances: "
            f"{b['pipeline_rps']:.2f}/s, {bc['billable_requests_per_remittance']:.1f} "
            f"billable requests, {b['worker_cpu_ms_per_remittance']['total']:.1f} ms CPU, "
            f"${bc['total']:.2f}/M  -> baseline/batched: requests "
            f"x{x['requests']:.2f}, CPU x{x['cpu']:.2f}, cost x{x['cost']:.2f}")
    met = [f"{k} {'ok' if v['met'] else 'MISSED'} ({v['value']} {v['target']})"
           for k, v in r["targets"].items()]
    lines.append("  targets         " + "\n                  ".join(met))
    return "\n".join(lines)
