"""A lease round's read cost does not grow with files (issue 24, scenario 4).

On main every file left a progress item in the leases table, which each consumer
round (and each console refresh) scans in full: after 10,000 files a round read
10,000 items more. File records now have their own table with a TTL, so the
round reads the same items before and after 10,000 files.
"""

from __future__ import annotations

from typing import Any

from services.enrichment.kind import ENRICHMENT
from services.enrichment.service import file_intake
from shared.files.drop import ObjectRef
from shared.pipeline.assemble import job_store
from shared.stream.leases import ShardLeaseTable
from tests.helpers import Env

FILES = 10_000


async def test_lease_round_reads_the_same_after_10000_file_records(fresh_env: Env) -> None:
    env = fresh_env
    scanned: list[int] = []

    def count(parsed: dict[str, Any], **_: Any) -> None:
        scanned.append(int(parsed.get("ScannedCount", 0)))

    env.clients.dynamodb.meta.events.register("after-call.dynamodb.Scan", count)
    leases = ShardLeaseTable(env.clients.dynamodb, env.names.leases, env.names.remittances,
                             "test")
    for shard in ("shardId-1", "shardId-2", "shardId-3"):
        await leases.create(shard, (), "TRIM_HORIZON")

    async def round_cost() -> int:
        scanned.clear()
        assert len(await leases.scan()) == 3
        return sum(scanned)

    before = await round_cost()
    # the file intake's own progress writer, as it records finished files
    progress = (await file_intake(env.settings, env.clients,
                                  job_store(env.settings, env.clients, ENRICHMENT))).progress
    one = ObjectRef("bucket", "BANK/0.xml", "etag0", 1)
    await progress.finish(one, 1, "done")  # the writer's own item, as a template
    template = (await env.clients.dynamodb.get_item(
        TableName=progress.table, Key={progress.key_name: {"S": progress.key(one)}}))["Item"]
    for start in range(1, FILES, 25):  # the other 9,999 alike, 25 per BatchWriteItem
        items = [{"PutRequest": {"Item": {**template, progress.key_name: {"S": progress.key(
            ObjectRef("bucket", f"BANK/{i}.xml", f"etag{i}", 1))}}}}
            for i in range(start, min(start + 25, FILES))]
        while items:
            resp = await env.clients.dynamodb.batch_write_item(
                RequestItems={progress.table: items})  # type: ignore[dict-item]
            items = resp.get("UnprocessedItems", {}).get(progress.table, [])  # type: ignore[assignment]
    stored = 0
    async for page in env.clients.dynamodb.get_paginator("scan").paginate(
            TableName=progress.table, Select="COUNT"):
        stored += page["Count"]
    assert stored >= FILES  # the records are really there

    after = await round_cost()
    assert after == before, (before, after)
    assert before < 10
    env.clients.dynamodb.meta.events.unregister("after-call.dynamodb.Scan", count)
