"""DynamoDB attribute (de)serialisation: plain Python in, typed JSON out, numbers as Decimal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

_ser = TypeSerializer()
_de = TypeDeserializer()


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def to_value(value: Any) -> Any:
    return _ser.serialize(value)


async def item_after_failed_condition(dynamodb: DynamoDBClient, table: str,
                                     key: dict[str, Any], exc: Exception
                                     ) -> dict[str, Any] | None:
    """The item as it stood when a conditional write failed: the one returned with the
    failure (``ReturnValuesOnConditionCheckFailure=ALL_OLD``), else a consistent read."""
    response: dict[str, Any] = dict(getattr(exc, "response", {}) or {})
    item: dict[str, Any] | None = response.get("Item")
    if item is None:
        item = (await dynamodb.get_item(TableName=table, Key=key,
                                        ConsistentRead=True)).get("Item")
    return item or None


async def own_write(dynamodb: DynamoDBClient, table: str, key: dict[str, Any], token: str,
                    exc: Exception, *, token_attribute: str = "write_token"
                    ) -> dict[str, Any] | None:
    """After a failed condition: the item, when it carries our ``token`` (else None).

    A conditional write can commit while its answer is lost (a timeout, a 500);
    botocore retries it and the retry fails its condition against our own write.
    Writers that store a fresh token with every write ask here whose write the
    item shows (:func:`item_after_failed_condition`).
    """
    item = await item_after_failed_condition(dynamodb, table, key, exc)
    if not item or item.get(token_attribute, {}).get("S") != token:
        return None
    return item
