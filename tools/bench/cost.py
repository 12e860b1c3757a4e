"""The AWS bill for a million remittances, from counted calls and ``bench/prices.json``.

Inputs are per remittance: the services' own calls by ``service.Operation`` (per
process, so each write is sized by the table it goes to), the calls the Step
Functions executions make (task ``SendMessage``, ``Publish``, ``UpdateItem``), the
state transitions, and the job items' sizes. Model, stated once:

* SQS: every request is billed (empty receives too); each payload < 64 KB. The
  partner's ``SendMessageBatch`` (10 per request) and SNS's delivery into the
  notification queue are counted as SQS requests.
* DynamoDB: a write is ``ceil(item KB)`` WRU. Index writes follow the projection
  (:func:`index_wru`, ``docs/indexes.md``): per remittance on the success path each
  job item enters ``running-index`` (PutItem), moves within it when the starter
  writes ``running_since`` (a key change: delete + put), changes while in it (the
  notification's two delivery records) and leaves it (Mark*). ``ALL`` writes the
  whole item each time (``ceil(item KB)`` WRU, the move twice, each change once);
  ``KEYS_ONLY`` writes a key entry under 1 KB (1 WRU, the move twice) and nothing for
  a change to a non-key attribute. GetItem is strongly consistent
  (``ceil(KB/4)`` RRU); BatchGetItem reads two small items eventually consistent
  (1 RRU); a GSI Query is eventually consistent (0.5 RRU, results are small); a
  lease-table Scan 1 RRU.
* Streams: one read request unit per ``GetRecords``. Step Functions API calls are
  free; only state transitions are billed. SES: one e-mail per ``SendEmail``.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

PRICES_PATH = Path(__file__).with_name("prices.json")
# Index events per remittance on the success path (see the module docstring).
# Enrichment enters two: running-index at creation, handoff-index when it completes.
# The first start keeps the creation's running_since (JobStore._in_flight_since): no
# key move on the success path.
INDEX_EVENTS = {"enrichment": {"enter": 2, "move": 0, "change": 1, "leave": 1},
                "notification": {"enter": 1, "move": 0, "change": 3, "leave": 1}}
PROJECTION = "KEYS_ONLY"   # shared/pipeline/indexes.py PROJECTION
_READS = {"BatchGetItem": 1.0, "Query": 0.5, "Scan": 1.0}
_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}


def prices() -> dict[str, float]:
    raw: dict[str, Any] = json.loads(PRICES_PATH.read_text())
    return {k: float(v["usd"]) for k, v in raw.items() if not k.startswith("_")}


def normalise(op: str) -> str:
    """``sqs.sendMessage`` (a workflow resource) → ``sqs.SendMessage``."""
    service, _, name = op.partition(".")
    return f"{service}.{name[:1].upper()}{name[1:]}"


def index_wru(events: dict[str, int], item_kb: float, projection: str = PROJECTION) -> float:
    """Index write units for one item's index events under ``projection``.

    A key move is a delete and a put (two writes); a change to a non-key attribute
    rewrites the entry only when the projection carries it (``ALL``).
    """
    unit = math.ceil(item_kb) if projection == "ALL" else 1
    writes = events.get("enter", 0) + 2 * events.get("move", 0) + events.get("leave", 0)
    if projection == "ALL":
        writes += events.get("change", 0)
    return float(writes * unit)


def bill(per_service: dict[str, dict[str, float]], workflow_calls: dict[str, float],
         transitions: float, item_kb: dict[str, float], partner_batch: int = 10,
         *, per_remittance: bool = True, projection: str = PROJECTION) -> dict[str, Any]:
    """USD per million remittances with a breakdown, and billable requests per remittance.

    ``per_remittance=False`` prices call rates only (no partner batch, no index writes):
    the idle window's calls per second, for USD per million seconds.
    """
    p = prices()
    kb_for = {"enrichment": item_kb.get("remittances", 1.0),
              "notification": item_kb.get("notifications", 1.0), "sweeper": 1.0}
    units: defaultdict[str, float] = defaultdict(float)
    requests: defaultdict[str, float] = defaultdict(float)

    def sqs(n: float) -> None:
        units["sqs_requests"] += n
        requests["sqs"] += n

    def write(n: float, kb: float) -> None:
        units["dynamodb_wru"] += n * math.ceil(kb)
        requests["dynamodb"] += n

    for service, calls in per_service.items():
        kb = kb_for.get(service, 1.0)
        for op, n in calls.items():
            svc, _, name = op.partition(".")
            if svc == "sqs":
                sqs(n)
            elif svc == "dynamodb" and name == "UpdateItem(lease)":
                write(n, 1.0)   # a shard lease item, well under 1 KB
            elif svc == "dynamodb" and name in _WRITES:
                write(n, kb)
            elif svc == "dynamodb" and name == "GetItem":
                units["dynamodb_rru"] += n * math.ceil(kb / 4)
                requests["dynamodb"] += n
            elif svc == "dynamodb" and name in _READS:
                units["dynamodb_rru"] += n * _READS[name]
                requests["dynamodb"] += n
            elif svc == "dynamodb-streams" and name == "GetRecords":
                units["streams_reads"] += n
                requests["dynamodb-streams"] += n
            elif svc == "sns" and name == "Publish":
                units["sns_publishes"] += n
                requests["sns"] += n
                sqs(n)  # delivery into the notification-events queue
            elif svc == "ses" and name in ("SendEmail", "SendRawEmail"):
                units["ses_emails"] += n
                requests["ses"] += n
    for op, n in workflow_calls.items():
        svc, _, name = normalise(op).partition(".")
        if svc == "sqs":
            sqs(n)
        elif svc == "sns":
            units["sns_publishes"] += n
            requests["sns"] += n
            sqs(n)  # delivery into the notification-events queue
        elif svc == "dynamodb":
            write(n / 2, kb_for["enrichment"])
            write(n / 2, kb_for["notification"])
    if per_remittance:
        sqs(1 / partner_batch)
        for service, events in INDEX_EVENTS.items():
            units["dynamodb_wru"] += index_wru(events, kb_for[service], projection)
    units["state_transitions"] += transitions

    price_of = {"sqs_requests": p["sqs_standard_request"],
                "dynamodb_wru": p["dynamodb_write_request_unit"],
                "dynamodb_rru": p["dynamodb_read_request_unit"],
                "streams_reads": p["dynamodb_streams_read_request"],
                "sns_publishes": p["sns_publish_request"], "ses_emails": p["ses_email"],
                "state_transitions": p["stepfunctions_standard_per_transition"]}
    breakdown = {k: round(units[k] * price_of[k] * 1_000_000, 2) for k in price_of}
    return {"total": round(sum(breakdown.values()), 2), "breakdown": breakdown,
            "units_per_remittance": {k: round(v, 3) for k, v in units.items()},
            "billable_requests_per_remittance": round(sum(requests.values()), 2),
            "billable_requests_by_service": {k: round(v, 2) for k, v in requests.items()}}


def lambda_compute(invocations: float, cpu_ms: float, memory_gb: float = 0.125) -> float:
    """Lower bound of Lambda compute per million remittances (billed ms ≥ CPU ms)."""
    p = prices()
    return round((invocations * p["lambda_request"]
                  + cpu_ms / 1000 * memory_gb * p["lambda_gb_second"]) * 1_000_000, 2)
