"""Turning a :class:`~tools.bench.harness.RunResult` into the figures of ``bench/results.json``."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from tools.bench.cost import bill, normalise
from tools.bench.harness import RunResult, empty_rates, epoch, percentiles

POLLS = ("sqs.ReceiveMessage", "dynamodb-streams.GetRecords")   # may come back empty
TARGETS = {"billable_requests": 14, "state_transitions": 4, "usd_per_million": 200.0,
           "p99_ms_at_2_per_s": 1000.0, "rss_mib": 150}


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


def capacity(run: RunResult, idle: dict[str, Any]) -> dict[str, Any]:
    """The flat-out run: the pipeline's rate against the emulator's own limit.

    The emulator (one process, about one core) is what saturates here, so its limit
    is 1 / its CPU-seconds per remittance during the flat-out phase (net of its idle
    CPU), and ``utilisation`` = ``pipeline_rps`` / that limit: near 1 means the
    services keep the emulator busy all the time and are not the bottleneck.
    """
    out = analyse(run)
    assert run.after is not None
    flat = run.flat or run.before
    assert flat is not None
    n_flat = max(1, out["flat_out_remittances"])
    seconds = run.after.at - flat.at
    emu_ms = ((run.after.emulator_cpu_s - flat.emulator_cpu_s) * 1000
              - idle["emulator_cpu_ms_per_s"] * seconds) / n_flat
    limit = 1000 / max(1e-9, emu_ms)
    out["emulator_cpu_ms_per_remittance_flat"] = round(emu_ms, 1)
    out["emulator_busy_share_flat"] = round(
        (run.after.emulator_cpu_s - flat.emulator_cpu_s) / max(1e-9, seconds), 2)
    out["emulator_limit_rps"] = round(limit, 2)
    out["utilisation"] = round(out["pipeline_rps"] / limit, 2)
    return out


def per_remittance(run: RunResult, idle: dict[str, Any]) -> dict[str, Any]:
    """The steady run's figures, with the time-proportional work taken out.

    Idle work (empty receives, stream polls, lease renewals, sweeps) is reported per
    second (``idle``); per remittance it would only say how fast the run went. CPU
    per remittance net of idle gives remittances per second per core.
    """
    out = analyse(run)
    assert run.after is not None and run.before is not None
    n, seconds = run.remittances, run.after.at - run.before.at
    net: dict[str, float] = {}
    for service in run.after.cpu_s:
        used = (run.after.cpu_s[service] - run.before.cpu_s[service]) * 1000
        net[service] = round(max(0.0, used - idle["cpu_ms_per_s"][service] * seconds) / n, 2)
    out["worker_cpu_ms_per_remittance_net_of_idle"] = net
    out["remittances_per_s_per_core"] = {k: round(1000 / v, 1) for k, v in net.items() if v}
    # Polls (ReceiveMessage, GetRecords) count per remittance only when they returned
    # something: calls - empty reads, counted by the services (``shared/aws/clients.py``).
    # Everything else that is time-proportional (leases, sweeps) is the idle rate's.
    full = {svc: {op: (v - run.before.calls.get(svc, {}).get(op, 0.0)
                       - run.after.empty.get(svc, {}).get(op, 0.0)
                       + run.before.empty.get(svc, {}).get(op, 0.0)) / n
                  for op, v in calls.items() if op in POLLS}
            for svc, calls in run.after.calls.items()}
    idle_calls: dict[str, dict[str, float]] = idle["aws_calls_per_s_by_service"]

    def net_of_idle(svc: str, op: str, v: float) -> float:
        if op in POLLS and svc in full:
            return max(0.0, full[svc].get(op, 0.0))
        return max(0.0, float(v) - idle_calls.get(svc, {}).get(op, 0.0) * seconds / n)

    by_service_net = {svc: {op: net_of_idle(svc, op, v) for op, v in calls.items()}
                      for svc, calls in out["aws_calls_per_remittance_by_service"].items()}
    merged: Counter[str] = Counter()
    for calls in by_service_net.values():
        merged.update(calls)
    out["aws_calls_per_remittance_net_of_idle"] = {
        k: round(merged[k], 3) for k in out["aws_calls_per_remittance"]}
    out["aws_calls_per_remittance_net_of_idle_by_service"] = {
        svc: {op: round(v, 3) for op, v in calls.items()}
        for svc, calls in by_service_net.items()}
    out["attempts"] = run.notes.get("transitions", {}).get("attempts", {})
    # The bill of the work the remittances caused; polls that found nothing, lease
    # renewals and sweeps are billed per day below (they cost money, per second).
    out["cost_usd_per_million_gross"] = out["cost_usd_per_million"]
    out["cost_usd_per_million"] = bill(
        by_service_net, out["workflow_calls_per_remittance"],
        out["state_transitions_per_remittance"], run.notes.get("item_kb", {}))
    out["cost_usd_per_million"]["note"] = (
        "services' calls net of idle: polls counted only when they returned something; "
        "empty polls and the idle rate of other time-proportional calls per day below")
    idle_bill = bill(idle_calls, {}, 0.0, run.notes.get("item_kb", {}), per_remittance=False)
    out["idle_usd_per_day"] = round(idle_bill["total"] * 86_400 / 1_000_000, 2)
    out["empty_reads_per_s"] = empty_rates(run.before, run.after)
    empty_by_service = {
        svc: {op: (v - run.before.empty.get(svc, {}).get(op, 0.0)) / max(1e-9, seconds)
              for op, v in ops.items()} for svc, ops in run.after.empty.items()}
    empty_bill = bill(empty_by_service, {}, 0.0, {}, per_remittance=False)
    out["empty_reads_usd_per_day"] = round(empty_bill["total"] * 86_400 / 1_000_000, 4)
    return out


SPREAD: dict[str, tuple[str | int, ...]] = {
    "pipeline_rps": ("pipeline_rps",),
    "emulator_limit_rps": ("emulator_limit_rps",),
    "utilisation": ("utilisation",),
    "p50_ms_at_2_per_s": ("latency_ms", "end_to_end", "p50"),
    "p99_ms_at_2_per_s": ("latency_ms", "end_to_end", "p99"),
    "billable_requests_per_remittance": ("steady", "cost_usd_per_million",
                                         "billable_requests_per_remittance"),
    "usd_per_million": ("steady", "cost_usd_per_million", "total"),
    "state_transitions_per_remittance": ("steady", "state_transitions_per_remittance"),
    "enrichment_cpu_ms_net": ("steady", "worker_cpu_ms_per_remittance_net_of_idle", "enrichment"),
    "notification_cpu_ms_net": ("steady", "worker_cpu_ms_per_remittance_net_of_idle",
                                "notification"),
    "idle_aws_calls_per_s": ("idle", "aws_calls_per_s"),
    "loadavg_1m": ("loadavg", 0),
}


def spread(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """min / median / max of the headline figures over repeated runs (N runs each)."""
    out: dict[str, Any] = {"n": len(runs)}
    for name, path in SPREAD.items():
        values: list[float] = []
        for r in runs:
            v: Any = r
            for key in path:
                if isinstance(v, dict):
                    v = v.get(key)
                elif isinstance(v, list | tuple) and isinstance(key, int):
                    v = v[key]
                else:
                    v = None
                if v is None:
                    break
            if isinstance(v, dict):
                v = sum(v.values())
            if isinstance(v, int | float):
                values.append(round(float(v), 3))
        if values:
            out[name] = {"min": min(values), "median": statistics.median(values),
                         "max": max(values), "values": values}
    return out


def targets(r: dict[str, Any]) -> dict[str, Any]:
    s = r.get("steady", r)
    cost = s["cost_usd_per_million"]
    growth = max(r["rss_growth_mib"].values()) if r["rss_growth_mib"] else 0.0
    rows = {
        "billable_requests_per_remittance": (cost["billable_requests_per_remittance"], "<=",
                                             TARGETS["billable_requests"]),
        "state_transitions_per_remittance": (s["state_transitions_per_remittance"], "<=",
                                             TARGETS["state_transitions"]),
        "usd_per_million": (cost["total"], "<=", TARGETS["usd_per_million"]),
        "p99_ms_at_2_per_s": (r["latency_ms"]["end_to_end"]["p99"], "<=",
                              TARGETS["p99_ms_at_2_per_s"]),
        "peak_rss_mib": (max(r["rss_mib"].values()), "<=", TARGETS["rss_mib"]),
        "rss_growth_mib": (growth, "<=", 5.0),
    }
    return {k: {"value": v, "target": f"{op} {t}",
                "met": bool(v >= t if op == ">=" else v <= t)} for k, (v, op, t) in rows.items()}


def summary(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    s = r.get("steady", r)
    cost = s["cost_usd_per_million"]
    cpu = s.get("worker_cpu_ms_per_remittance_net_of_idle", s["worker_cpu_ms_per_remittance"])
    lines = [
        f"remitflow bench: {r['remittances']} remittances  ({r['command']})",
        f"  pipeline        {r['pipeline_rps']:.2f} remittances/s flat out; emulator limit "
        f"{r['emulator_limit_rps']:.2f}/s (1 / {r['emulator_cpu_ms_per_remittance_flat']:.0f} "
        f"ms of its CPU per remittance): utilisation {r['utilisation']:.2f}",
        "  latency ms      " + "  ".join(
            f"{k} p50 {v['p50']:.0f} p95 {v['p95']:.0f} p99 {v['p99']:.0f}"
            for k, v in lat.items() if k == "end_to_end") + f"  (at {r['controlled_rate']}/s)",
        "    stages p50    " + "  ".join(f"{k} {v['p50']:.0f}" for k, v in lat.items()
                                         if k != "end_to_end")
        + "  (notification = notification_intake + its start + task)",
        f"  per remittance  (steady {s.get('offered_rps', '?')}/s) "
        f"{s['aws_calls_per_remittance_total']:.1f} AWS calls by the services "
        f"(+{sum(s['workflow_calls_per_remittance'].values()):.0f} by the workflows); billable "
        f"{cost['billable_requests_per_remittance']:.1f}; "
        f"{s['state_transitions_per_remittance']:.2f} state transitions; attempts "
        f"{s.get('attempts', {})}",
        "  worker CPU      net of idle, ms/remittance: " + ", ".join(
            f"{k} {v:.1f}" for k, v in cpu.items()),
        "  idle            " + ", ".join(f"{k} {v:.1f}" for k, v in
                                          r["idle"]["cpu_ms_per_s"].items())
        + f" CPU ms/s; {sum(r['idle']['aws_calls_per_s'].values()):.1f} AWS calls/s, of "
        f"which {sum(r['idle'].get('empty_reads_per_s', {}).values()):.1f} empty polls "
        f"(${s.get('idle_usd_per_day', 0):.2f}/day); at steady load "
        f"{sum(s.get('empty_reads_per_s', {}).values()):.1f} empty polls/s "
        f"(${s.get('empty_reads_usd_per_day', 0):.3f}/day)",
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
    if "emulator_sfn_cache" in r:
        e = r["emulator_sfn_cache"]
        lines.append(
            f"  emulator        caches off (moto as shipped) -> on: "
            f"{e['off']['emulator_cpu_ms_per_remittance_flat']:.0f} -> "
            f"{e['on']['emulator_cpu_ms_per_remittance_flat']:.0f} ms CPU per remittance "
            f"(x{e['cpu_ratio_off_to_on']:.2f}); limit {e['off']['emulator_limit_rps']:.2f} -> "
            f"{e['on']['emulator_limit_rps']:.2f}/s; utilisation "
            f"{e['off']['utilisation']:.2f} -> {e['on']['utilisation']:.2f}")
    met = [f"{k} {'ok' if v['met'] else 'MISSED'} ({v['value']} {v['target']})"
           for k, v in r["targets"].items()]
    lines.append("  targets         " + "\n                  ".join(met))
    return "\n".join(lines)
