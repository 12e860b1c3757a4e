"""Role leases in ``remitflow-leases``: who leads (the sweeper), with a wall-clock expiry.

A lease is an item ``{lease_key, owner, expires_at}`` in the group ``role``. Taking
or renewing is one conditional write: free, expired, or already ours. Expiry uses wall-clock seconds
with a TTL several times the renew interval. (Stream shard leases are a different
protocol, counter-fenced: :mod:`shared.stream.leases`.)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from shared.aws.clients import error_code
from shared.aws.names import lease_item_key

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

ROLE = "role"
"""The leases table's group of role leases (``docs/stream.md``, "Leases")."""


class Leases:
    def __init__(self, dynamodb: DynamoDBClient, table: str, owner: str, ttl_s: float) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.owner = owner
        self.ttl_s = ttl_s

    async def acquire(self, key: str) -> bool:
        """Take or renew ``key``; False when someone else holds it."""
        now = time.time()
        try:
            await self.dynamodb.update_item(
                TableName=self.table, Key=lease_item_key(ROLE, key),
                UpdateExpression="SET #owner = :me, expires_at = :exp, renewed_at = :now",
                ConditionExpression=("attribute_not_exists(#owner) OR #owner = :me "
                                     "OR expires_at < :now"),
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": self.owner},
                                           ":exp": {"N": f"{now + self.ttl_s:.3f}"},
                                           ":now": {"N": f"{now:.3f}"}})
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def release(self, key: str) -> None:
        """Give ``key`` up at once so a successor need not wait for expiry."""
        try:
            await self.dynamodb.update_item(
                TableName=self.table, Key=lease_item_key(ROLE, key),
                UpdateExpression="REMOVE #owner, expires_at",
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": self.owner}})
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
