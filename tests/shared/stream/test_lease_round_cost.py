"""A lease round reads its own leases and nothing else (issue 24, scenario 4).

Once every file left a progress item in the leases table, which each consumer
round (and each console refresh) scanned in full: after 10,000 files a round read
10,000 items more. File records now have their own table with a TTL, and a round
is one Query of its own group of the leases table: it reads exactly its leases,
whatever else the table holds (console sessions, leadership, the hand-off cursor,
another table's leases) and however many files were recorded.
"""

from __future__ import annotations

from typing import Any

from services.enrichment.kind import ENRICHMENT
from services.enrichment.service import file_intake
from services.sweeper.console.session import Sessions, SessionStore
from shared.files.drop import ObjectRef
from shared.operations.leader import Leases
from shared.pipeline.assemble import job_store
from shared.stream.leases import ShardLeaseTable
from tests.helpers import Env

FILES = 10_000


async def test_lease_round_reads_the_same_after_10000_file_records(fresh_env: Env) -> None:
    env = fresh_env
    scanned: list[tuple[str, int]] = []

    def count(parsed: dict[str, Any], event_name: str, **_: Any) -> None:
        scanned.append((event_name.rsplit(".", 1)[-1], int(parsed.get("ScannedCount", 0))))

    ddb = env.clients.dynamodb
    for op in ("Scan", "Query"):
        ddb.meta.events.register(f"after-call.dynamodb.{op}", count)
    leases = ShardLeaseTable(ddb, env.names.leases, env.names.remittances, "test")
    for shard in ("shardId-1", "shardId-2", "shardId-3"):
        await leases.create(shard, (), "TRIM_HORIZON")
    # Everything else the leases table holds, more of it than of the leases themselves.
    other = ShardLeaseTable(ddb, env.names.leases, env.names.notifications, "test")
    for i in range(20):
        await other.create(f"shardId-{i}", (), "TRIM_HORIZON")
    assert await Leases(ddb, env.names.leases, "test", 30).acquire("sweeper-leader")
    sessions = Sessions("t" * 32, store=SessionStore(ddb, env.names.leases))
    for _ in range(20):
        await sessions.sign_in()

    async def round_cost() -> int:
        scanned.clear()
        assert len(await leases.current()) == 3
        assert [op for op, _ in scanned] == ["Query"], "one Query, never a Scan"
        return sum(n for _, n in scanned)

    before = await round_cost()
    assert before == 3, "reads its three leases and nothing else"
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
    for op in ("Scan", "Query"):
        ddb.meta.events.unregister(f"after-call.dynamodb.{op}", count)
