"""What the data lifecycle stores per remittance, measured: the figures of
``docs/capacity.md`` ("Data lifecycle: storage"), printed with ``pytest -s``.

Remittances to e-mail payees run through the three services in-process, their finished
jobs are expired by the emulator and archived by the sweeper; the test measures the
job items (DynamoDB's size rule: attribute names and values), the tombstones and the
archive objects, and fails if one outgrows what the capacity figures assume.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import pytest

from shared.aws.dynamo import from_item
from shared.aws.emulator_ttl import trigger
from shared.operations.archive import Archive
from shared.pipeline.lifecycle import TOMBSTONES
from tests.helpers import Env, eventually, job_in, running
from tools.demo import generate_messages
from tools.stack import builder

pytestmark = pytest.mark.own_stack("runs every service's workers and measures whole tables")

COUNT = 12
BUDGET = {"remittances": 2500, "notifications": 2200, "tombstone": 600,
          "archive_remittances": 4000, "archive_notifications": 4000}


def attribute_size(value: Any) -> int:
    """DynamoDB's item-size rule, closely enough for a budget."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, (int, Decimal)):
        return len(str(value)) // 2 + 1
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, list):
        return 3 + sum(attribute_size(v) + 1 for v in value)
    if isinstance(value, dict):
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in value.items())
    return len(bytes(value))


def item_size(item: dict[str, Any]) -> int:
    return sum(len(k.encode()) + attribute_size(v) for k, v in item.items())


async def _mean_item(env: Env, table: str) -> float:
    items = [from_item(i) for i in (await env.clients.dynamodb.scan(TableName=table))["Items"]]
    assert items, table
    return sum(item_size(i) for i in items) / len(items)


async def test_storage_per_remittance_stays_within_the_capacity_figures(env: Env) -> None:
    env = env.with_settings(retention_days="1")
    messages = [m for m in generate_messages(3 * COUNT, prefix="REQ-SIZE")
                if m["payee_id"] != "PAYEE-0003"][:COUNT]        # e-mail payees only
    archive = Archive(env.clients.s3, env.settings.archive_bucket_name)
    sizes: dict[str, float] = {}
    async with running(env, builder("enrichment")), running(env, builder("notification")), \
            running(env, builder("sweeper")):
        await env.send(*messages)
        for m in messages:
            await job_in(env.store(), m["request_id"], "COMPLETED", timeout_s=40)
            await job_in(env.store("notifications"), m["request_id"], "SENT", timeout_s=40)
        for short in ("remittances", "notifications"):
            sizes[short] = await _mean_item(env, env.names.table(short))

        async def stones() -> bool:
            resp = await env.clients.dynamodb.scan(TableName=env.names.name(TOMBSTONES),
                                                   Select="COUNT")
            return resp["Count"] == 2 * len(messages)

        await eventually(stones, what="every tombstone")
        sizes["tombstone"] = await _mean_item(env, env.names.name(TOMBSTONES))
        for short in ("remittances", "notifications"):
            await asyncio.to_thread(trigger, env.endpoint, env.names.table(short),
                                    time.time() + 3 * 86400)

        async def archived() -> bool:
            return len(await archive.keys()) == 2 * len(messages)

        await eventually(archived, timeout_s=40, what="every expired job archived")
    objects: dict[str, list[int]] = {}
    async for page in env.clients.s3.get_paginator("list_objects_v2").paginate(
            Bucket=archive.bucket):
        for o in page.get("Contents", []):
            objects.setdefault(o["Key"].split("/")[0], []).append(int(o["Size"]))
    for short, found in objects.items():
        sizes[f"archive_{short}"] = sum(found) / len(found)
    print("lifecycle sizes (bytes, mean):", json.dumps({k: round(v) for k, v in sizes.items()}))
    over = {k: round(v) for k, v in sizes.items() if v > BUDGET[k]}
    assert not over, f"past the budget docs/capacity.md assumes: {over}"
