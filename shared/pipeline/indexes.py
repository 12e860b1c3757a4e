"""Reading the sparse job indexes (``running-index``, ``retry-index``, ``failed-index``).

The indexes project **keys only** (:data:`PROJECTION`; ``docs/indexes.md``). Each
move of a job into, out of or within an index writes an index entry; with an
``ALL`` projection every such write (and every other change to the item while it
sits in an index: the starter's, the task worker's) rewrote the whole ~1.7 KB
item, 2 write units each. A keys-only entry is under 1 KB (1 write unit), and a
change to a non-key attribute writes nothing to the index.

No reader can answer from the index entry alone, which is why not even a small
``INCLUDE``: a re-drive starts the job with its payload, reconcile needs the
execution name and attempt, the console and ``GET /v1/jobs`` show the whole job.
Only counting (``Select=COUNT``) reads the index alone, and it needs no attribute.

So a page is: one ``Query`` for keys, then one strongly consistent
``BatchGetItem`` for those items (unprocessed keys retried). The index is
eventually consistent and the items are read after it: an item that left the
index meanwhile, or whose sort key moved past ``due_before``, is dropped, so
every job returned is, at the time of the item read, in the state asked for. A
page may therefore come back short; its position (cursor) is the index's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.aws.dynamo import from_item, to_value
from shared.retry import pause
from shared.schedule import Schedule

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

PROJECTION: Mapping[str, Any] = {"ProjectionType": "KEYS_ONLY"}
"""The projection bootstrap and the CDK stack give every sparse job index."""
INDEX_NAME = {"running": "running-index", "retry": "retry-index", "failed": "failed-index"}
INDEX_SORT = {"running": "running_since", "retry": "next_attempt_at", "failed": "failed_at"}
BATCH_GET_MAX = 100          # DynamoDB's limit of keys per BatchGetItem
_UNPROCESSED_ROUNDS = 8      # then the page fails (the sweep logs it and carries on)
_UNPROCESSED_BACKOFF = Schedule.exponential(0.05, 1.0)


class IndexReadIncomplete(RuntimeError):
    """``BatchGetItem`` kept returning unprocessed keys (throttling)."""


def key_query(table: str, state: str, shard: int, due_before: Any) -> dict[str, Any]:
    """``Query`` arguments for one shard of one index (key condition only)."""
    kwargs: dict[str, Any] = {
        "TableName": table, "IndexName": INDEX_NAME[state],
        "KeyConditionExpression": "#pk = :pk",
        "ExpressionAttributeNames": {"#pk": f"{state}_job"},
        "ExpressionAttributeValues": {":pk": {"S": f"s{shard}"}}}
    if due_before is not None:
        kwargs["KeyConditionExpression"] += " AND #sk <= :due"
        kwargs["ExpressionAttributeNames"]["#sk"] = INDEX_SORT[state]
        kwargs["ExpressionAttributeValues"][":due"] = to_value(due_before)
    return kwargs


async def batch_get(dynamodb: DynamoDBClient, table: str, request_ids: list[str], *,
                    consistent: bool = True, projection: str | None = None,
                    stop: asyncio.Event | None = None) -> dict[str, dict[str, Any]]:
    """The items of ``request_ids`` (absent ones left out), by request id.

    Strongly consistent by default: the sweeper decides on what it reads (and its
    writes are conditioned on the version it read). Unprocessed keys are asked for
    again with a short backoff, up to a bound, then :class:`IndexReadIncomplete`.
    ``projection`` (a ``ProjectionExpression``) reads only those attributes; ``stop``
    (set at shutdown) ends a backoff with :class:`IndexReadIncomplete`.
    """
    out: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(request_ids))
    for start in range(0, len(unique), BATCH_GET_MAX):
        request: dict[str, Any] = {table: {
            "Keys": [{"request_id": {"S": rid}} for rid in unique[start:start + BATCH_GET_MAX]],
            "ConsistentRead": consistent,
            **({"ProjectionExpression": projection} if projection else {})}}
        rounds = 0
        while request:
            resp = await dynamodb.batch_get_item(RequestItems=request)
            for item in resp.get("Responses", {}).get(table, []):
                row = from_item(item)
                out[str(row["request_id"])] = row
            request = dict(resp.get("UnprocessedKeys") or {})
            if request:
                rounds += 1
                if rounds > _UNPROCESSED_ROUNDS:
                    raise IndexReadIncomplete(f"{table}: keys still unprocessed after "
                                              f"{_UNPROCESSED_ROUNDS} retries")
                if await pause(stop or asyncio.Event(), _UNPROCESSED_BACKOFF, rounds):
                    raise IndexReadIncomplete(f"{table}: stopping with keys unprocessed")
    return out


def still_in(row: Mapping[str, Any], state: str, due_before: Any) -> bool:
    """Whether the item as read is (still) an entry of ``state``'s index within bound."""
    if row.get(f"{state}_job") is None:
        return False
    if due_before is None:
        return True
    sort = row.get(INDEX_SORT[state])
    try:
        return sort is not None and bool(sort <= due_before)
    except TypeError:
        return False


def matches(row: Mapping[str, Any], where: Mapping[str, str] | None) -> bool:
    """``where``: attribute → string the item must carry (a keys-only index cannot filter)."""
    return not where or all(row.get(k) == v for k, v in where.items())


async def read_page(dynamodb: DynamoDBClient, table: str, state: str, *, shards: int,
                    due_before: Any, limit: int, cursor: dict[str, Any] | None,
                    where: Mapping[str, str] | None
                    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, int]:
    """Up to ``limit`` items in ``state`` across all shards: (items, cursor, index entries read).

    Keeps reading index pages until ``limit`` items qualify or the index ends, like a
    ``FilterExpression`` would; the count is of index entries (``ScannedCount``), each
    kept entry costing one item read more.
    """
    rows: list[dict[str, Any]] = []
    scanned = 0
    start_shard = int(cursor["shard"]) if cursor else 0
    last_key = cursor.get("key") if cursor else None
    for shard in range(start_shard, shards):
        while True:
            kwargs = key_query(table, state, shard, due_before)
            kwargs["Limit"] = limit - len(rows)
            if last_key:
                kwargs["ExclusiveStartKey"] = last_key
            resp = await dynamodb.query(**kwargs)
            scanned += int(resp.get("ScannedCount", 0))
            ids = [str(from_item(i)["request_id"]) for i in resp.get("Items", [])]
            items = await batch_get(dynamodb, table, ids) if ids else {}
            rows += [items[rid] for rid in ids if rid in items
                     and still_in(items[rid], state, due_before) and matches(items[rid], where)]
            last_key = resp.get("LastEvaluatedKey")
            if len(rows) >= limit:
                if last_key:
                    return rows, {"shard": shard, "key": last_key}, scanned
                nxt = shard + 1
                return rows, ({"shard": nxt} if nxt < shards else None), scanned
            if not last_key:
                break
    return rows, None, scanned


async def count(dynamodb: DynamoDBClient, table: str, state: str, *, shards: int,
                due_before: Any = None) -> tuple[int, int]:
    """``Select=COUNT`` over one index, all shards: (count, index entries read)."""
    total = scanned = 0
    for shard in range(shards):
        start: dict[str, Any] | None = None
        while True:
            kwargs = key_query(table, state, shard, due_before)
            kwargs["Select"] = "COUNT"
            if start:
                kwargs["ExclusiveStartKey"] = start
            resp = await dynamodb.query(**kwargs)
            total += int(resp.get("Count", 0))
            scanned += int(resp.get("ScannedCount", 0))
            start = resp.get("LastEvaluatedKey")
            if not start:
                break
    return total, scanned
