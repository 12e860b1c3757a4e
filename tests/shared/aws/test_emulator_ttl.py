"""The emulator's TTL expirer: expired items go, and their REMOVE says TTL did it.

Against the emulator process over HTTP (``DELETE /_aws/dynamodb/expired``), read back
through DynamoDB Streams' ``GetRecords`` as the archiver reads it.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from shared.aws.emulator_ttl import trigger
from shared.provision.primitives import ensure_ttl
from shared.stream.leases import TRIM_HORIZON
from shared.stream.source import DynamoDBStreamSource, Record
from tests.helpers import Env


async def _table(env: Env) -> str:
    name = f"{env.settings.prefix}-ttl-{uuid.uuid4().hex[:6]}"
    await env.clients.dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    await ensure_ttl(env.clients.dynamodb, name, "expires_at")
    return name


async def _records(env: Env, table: str) -> list[Record]:
    source = DynamoDBStreamSource(env.clients.dynamodb, env.clients.streams, table)
    out: list[Record] = []
    for shard in await source.shards():
        iterator: str | None = await source.iterator(shard.shard_id, TRIM_HORIZON)
        while iterator:
            records, iterator = await source.read(iterator, 100)
            out += records
            if not records:
                break
    return out


async def test_expired_items_are_deleted_by_the_service(env: Env) -> None:
    table = await _table(env)
    now = int(time.time())
    ddb = env.clients.dynamodb
    for key, ttl in (("past", {"N": str(now - 5)}), ("future", {"N": str(now + 3600)}),
                     ("text", {"S": str(now - 5)}), ("none", None)):
        item = {"id": {"S": key}, **({"expires_at": ttl} if ttl else {})}
        await ddb.put_item(TableName=table, Item=item)
    await ddb.put_item(TableName=table, Item={"id": {"S": "deleted"}})
    await ddb.delete_item(TableName=table, Key={"id": {"S": "deleted"}})

    assert await asyncio.to_thread(trigger, env.endpoint, table) == 1
    left = {i["id"]["S"] for i in (await ddb.scan(TableName=table))["Items"]}
    assert left == {"future", "text", "none"}, "only the expired number went"

    removes = [r for r in await _records(env, table) if r.event == "REMOVE"]
    by_key = {r.keys["id"]["S"]: r for r in removes}
    assert by_key["past"].expired, by_key["past"].user_identity
    assert by_key["past"].old_image is not None
    assert by_key["past"].old_image["expires_at"] == {"N": str(now - 5)}
    assert not by_key["deleted"].expired, "a caller's DeleteItem is not an expiry"

    # later, by the clock the test names: the future item goes too, once
    assert await asyncio.to_thread(trigger, env.endpoint, table, now + 7200) == 1
    assert await asyncio.to_thread(trigger, env.endpoint, table, now + 7200) == 0


def test_lambda_form_of_the_ttl_identity_counts_too() -> None:
    """The DynamoDB Streams documentation's record (the Lambda event's spelling)."""
    from shared.stream.source import record_of

    raw = {"eventName": "REMOVE", "dynamodb": {"Keys": {"id": {"S": "a"}},
                                               "SequenceNumber": "1"},
           "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"}}
    assert record_of(raw).expired
    raw["userIdentity"] = {"type": "Service", "principalId": "someone.else"}
    assert not record_of(raw).expired
    del raw["userIdentity"]
    assert not record_of(raw).expired
