"""The embedded emulator's conditional writes are atomic, as DynamoDB's are.

Many clients race one conditional ``UpdateItem`` each, all conditioned on the same
counter (what two stream consumers do when both see an unowned lease): on AWS exactly
one wins and the rest get ``ConditionalCheckFailedException``. moto's threaded
server let several win (``shared/aws/emulator_dynamodb.py``).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from shared.aws import emulator_dynamodb
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


@pytest.mark.unit
def test_an_update_expression_is_parsed_once_and_its_tree_never_changes() -> None:
    """The parse cache (``cache_update_expressions``): one tree per text, and updates
    that share a text but not their values each write their own values."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.parsing import expressions

    parser: Any = expressions
    UpdateExpressionParser = parser.UpdateExpressionParser
    emulator_dynamodb.cache_update_expressions()
    emulator_dynamodb.cache_update_expressions()          # idempotent
    text = "SET #s = :s, version = version + :one REMOVE due_at"
    tree = UpdateExpressionParser.make(text)
    assert UpdateExpressionParser.make(text) is tree
    assert UpdateExpressionParser.make("SET #s = :t") is not tree

    backend: Any = DynamoDBBackend("us-east-1", "123456789012")
    backend.create_table("jobs", schema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         attr=[{"AttributeName": "id", "AttributeType": "S"}],
                         billing_mode="PAY_PER_REQUEST", throughput=None,
                         global_indexes=None, indexes=None, streams=None,
                         sse_specification=None, tags=[], deletion_protection_enabled=False,
                         warm_throughput=None)
    for key, state in (("a", "FAILED"), ("b", "SENT"), ("a", "SENT")):
        if backend.get_item("jobs", {"id": {"S": key}}) is None:
            backend.put_item("jobs", {"id": {"S": key}, "version": {"N": "0"},
                                      "due_at": {"N": "1"}})
        backend.update_item("jobs", {"id": {"S": key}}, text, {"#s": "state"},
                            {":s": {"S": state}, ":one": {"N": "1"}})
    rows = {k: backend.get_item("jobs", {"id": {"S": k}}).to_json()["Attributes"]
            for k in ("a", "b")}
    assert rows == {"a": {"id": {"S": "a"}, "version": {"N": "2"}, "state": {"S": "SENT"}},
                    "b": {"id": {"S": "b"}, "version": {"N": "1"}, "state": {"S": "SENT"}}}
    assert UpdateExpressionParser.make(text) is tree
