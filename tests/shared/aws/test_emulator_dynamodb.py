"""The embedded emulator's conditional writes are atomic, as DynamoDB's are.

Many clients race one conditional ``UpdateItem`` each, all conditioned on the same
counter (what two stream consumers do when both see an unowned lease): on AWS exactly
one wins and the rest get ``ConditionalCheckFailedException``. moto's threaded
server let several win (``shared/aws/emulator_dynamodb.py``).
"""

from __future__ import annotations

import asyncio
import uuid

from shared.aws.clients import error_code
from tests.helpers import Env

RACERS = 12
ROUNDS = 15


async def test_a_conditional_write_has_one_winner(env: Env) -> None:
    table = env.names.leases
    ddb = env.clients.dynamodb
    for _ in range(ROUNDS):
        key = {"lease_group": {"S": "race"}, "lease_key": {"S": uuid.uuid4().hex}}
        await ddb.put_item(TableName=table, Item={**key, "counter": {"N": "0"}})

        async def take(me: str, key: dict[str, dict[str, str]] = key) -> bool:
            try:
                await ddb.update_item(
                    TableName=table, Key=key,
                    UpdateExpression="SET #o = :me, #c = #c + :one",
                    ConditionExpression="#c = :zero",
                    ExpressionAttributeNames={"#o": "owner", "#c": "counter"},
                    ExpressionAttributeValues={":me": {"S": me}, ":one": {"N": "1"},
                                               ":zero": {"N": "0"}})
            except Exception as exc:
                assert error_code(exc) == "ConditionalCheckFailedException", exc
                return False
            return True

        won = await asyncio.gather(*(take(f"racer-{i}") for i in range(RACERS)))
        item = (await ddb.get_item(TableName=table, Key=key, ConsistentRead=True))["Item"]
        assert sum(won) == 1 and item["counter"]["N"] == "1", (sum(won), item)
