"""Webhook endpoint health: failure streaks per receiver, and disabling a dead one.

An *endpoint* is a receiver origin (scheme, host, port; never the path or query,
which may carry secrets); its id is ``ep_`` + 16 hex of the origin's SHA-256, so
metrics and URLs name it without showing it. One item per endpoint in the kind's
own table ``<prefix>-endpoints`` (declared by ``services/notification/kind.py``):
a table apart from the job table, so these items never enter the job stream, the
sparse indexes or the sweeper's counts.

Guarantees:

* every webhook attempt is recorded with **one** ``UpdateItem`` and no read
  (counters and the streak start use ``if_not_exists``, so concurrent replicas
  add up instead of overwriting each other);
* an endpoint whose current failure streak is older than ``disable_after_s`` is
  disabled once (a conditional write; the streak's own start decides, not the
  replica's clock at the time it noticed);
* enabling is an operator's act, recorded in the item's ``history`` with who and
  why; it clears the streak. Re-driving the notifications that waited for the
  endpoint is the caller's part (``services/notification/service.py``).

States of an endpoint: healthy (no streak) → failing (``first_failure_at`` set)
→ disabled (``disabled_at`` set) → enabled by an operator (healthy again). See
``docs/runbook.md``, "Webhook endpoint failing".
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from shared.aws.clients import error_code
from shared.aws.dynamo import from_item, to_value
from shared.pipeline.jobs import now_iso

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

REASON_MAX = 200


def origin_of(url: str) -> str:
    """``scheme://host:port`` of a webhook URL (lower-case host, explicit port)."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.scheme}://{parsed.host.lower()}:{port}"


def endpoint_id(url: str) -> str:
    """The stable, non-revealing id of ``url``'s origin."""
    return "ep_" + hashlib.sha256(origin_of(url).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EndpointState:
    """One endpoint's health, as stored."""

    endpoint_id: str
    raw: dict[str, Any]

    @property
    def disabled(self) -> bool:
        return bool(self.raw.get("disabled_at"))

    @property
    def failing_s(self) -> float:
        """Seconds since the current failure streak began (0 when healthy)."""
        first = self.raw.get("first_failure_at")
        return max(0.0, time.time() - float(first)) if first is not None else 0.0

    def public(self) -> dict[str, Any]:
        first = self.raw.get("first_failure_at")
        return {
            "endpoint_id": self.endpoint_id,
            "origin": self.raw.get("origin"),
            "state": "disabled" if self.disabled else ("failing" if first else "healthy"),
            "consecutive_failures": int(self.raw.get("consecutive_failures", 0)),
            "first_failure_at": _iso(first),
            "failing_seconds": round(self.failing_s, 3),
            "last_success_at": self.raw.get("last_success_at"),
            "last_failure_at": self.raw.get("last_failure_at"),
            "last_failure_reason": self.raw.get("last_failure_reason"),
            "disabled_at": self.raw.get("disabled_at"),
            "attempts": int(self.raw.get("attempts", 0)),
            "history": list(self.raw.get("history", [])),
        }


def _iso(epoch: Any) -> str | None:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(epoch)))


class EndpointHealth:
    """Reads and writes endpoint items in one table."""

    def __init__(self, dynamodb: DynamoDBClient, table: str, *,
                 disable_after_s: float = 5 * 86400) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.disable_after_s = disable_after_s

    async def get(self, eid: str, *, consistent: bool = False) -> EndpointState | None:
        resp = await self.dynamodb.get_item(TableName=self.table,
                                            Key={"endpoint_id": {"S": eid}},
                                            ConsistentRead=consistent)
        item = resp.get("Item")
        return EndpointState(eid, from_item(item)) if item else None

    async def list(self) -> list[EndpointState]:
        """Every endpoint (a scan: the table holds one small item per receiver origin)."""
        out: list[EndpointState] = []
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            resp = await self.dynamodb.scan(**kwargs)
            for item in resp.get("Items", []):
                raw = from_item(item)
                out.append(EndpointState(str(raw["endpoint_id"]), raw))
            if not resp.get("LastEvaluatedKey"):
                return out
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    async def record(self, url: str, *, ok: bool, reason: str | None = None,
                     now: float | None = None) -> EndpointState:
        """Record one attempt (one ``UpdateItem``); disable the endpoint past the limit."""
        now = time.time() if now is None else now
        eid, stamp = endpoint_id(url), now_iso()
        values: dict[str, Any] = {":origin": to_value(origin_of(url)), ":one": {"N": "1"},
                                  ":zero": {"N": "0"}, ":at": to_value(stamp)}
        sets = ["origin = :origin", "attempts = if_not_exists(attempts, :zero) + :one"]
        if ok:
            sets += ["consecutive_failures = :zero", "last_success_at = :at"]
            expression = "SET " + ", ".join(sets) + " REMOVE first_failure_at"
        else:
            values[":now"] = {"N": f"{now:.3f}"}
            values[":reason"] = to_value((reason or "-")[:REASON_MAX])
            sets += ["consecutive_failures = if_not_exists(consecutive_failures, :zero) + :one",
                     "first_failure_at = if_not_exists(first_failure_at, :now)",
                     "last_failure_at = :at", "last_failure_reason = :reason"]
            expression = "SET " + ", ".join(sets)
        resp = await self.dynamodb.update_item(
            TableName=self.table, Key={"endpoint_id": {"S": eid}}, UpdateExpression=expression,
            ExpressionAttributeValues=values, ReturnValues="ALL_NEW")
        state = EndpointState(eid, from_item(resp["Attributes"]))
        if not ok and not state.disabled and state.failing_s >= self.disable_after_s:
            state = await self._disable(state)
        return state

    async def _disable(self, state: EndpointState) -> EndpointState:
        entry = (f"{now_iso()} disabled: failing for {state.failing_s:.0f}s "
                 f"({int(state.raw.get('consecutive_failures', 0))} attempts in a row)")
        try:
            resp = await self.dynamodb.update_item(
                TableName=self.table, Key={"endpoint_id": {"S": state.endpoint_id}},
                UpdateExpression="SET disabled_at = :at, #h = list_append("
                                 "if_not_exists(#h, :empty), :entry)",
                ConditionExpression="attribute_exists(first_failure_at) AND "
                                    "attribute_not_exists(disabled_at)",
                ExpressionAttributeNames={"#h": "history"},
                ExpressionAttributeValues={":at": to_value(now_iso()), ":empty": {"L": []},
                                           ":entry": {"L": [to_value(entry)]}},
                ReturnValues="ALL_NEW")
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return await self.get(state.endpoint_id, consistent=True) or state
        return EndpointState(state.endpoint_id, from_item(resp["Attributes"]))

    async def enable(self, eid: str, *, by: str, note: str = "") -> EndpointState | None:
        """Clear the streak and the disabled mark; ``None`` when the endpoint is unknown."""
        text = " ".join(note.split())[:200]
        entry = f"{now_iso()} enabled by {by}" + (f": {text}" if text else "")
        try:
            resp = await self.dynamodb.update_item(
                TableName=self.table, Key={"endpoint_id": {"S": eid}},
                UpdateExpression="SET consecutive_failures = :zero, enabled_at = :at, "
                                 "enabled_by = :by, #h = list_append(if_not_exists(#h, :empty), "
                                 ":entry) REMOVE disabled_at, first_failure_at",
                ConditionExpression="attribute_exists(endpoint_id)",
                ExpressionAttributeNames={"#h": "history"},
                ExpressionAttributeValues={":zero": {"N": "0"}, ":at": to_value(now_iso()),
                                           ":by": to_value(by), ":empty": {"L": []},
                                           ":entry": {"L": [to_value(entry)]}},
                ReturnValues="ALL_NEW")
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return EndpointState(eid, from_item(resp["Attributes"]))
