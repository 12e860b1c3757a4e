"""Resource names, derived from one prefix so tests and deployments can isolate themselves.

Only the names the mechanism itself owns live here (leases table, the workflows'
role, the dead-letter rule); each job kind derives its own names from its
descriptor (:meth:`shared.pipeline.kind.JobKind.names`). The full list is in
``docs/architecture.md``, "Resource names".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LEASE_GROUP = "lease_group"
"""The leases table's partition key: what an item is for (``shard:<table>``, ``role``,
``handoff``, ``console-session``), so each reader queries its own group only."""
LEASE_KEY = "lease_key"
"""The leases table's sort key: the item within its group."""
LEASE_TTL = "ttl"
"""The leases table's expiry attribute (epoch seconds), for items that end (sessions)."""


def lease_item_key(group: str, key: str) -> dict[str, Any]:
    """The DynamoDB key of one item of the leases table (``docs/stream.md``, "Leases")."""
    return {LEASE_GROUP: {"S": group}, LEASE_KEY: {"S": key}}


@dataclass(frozen=True)
class Names:
    prefix: str = "remitflow"

    def name(self, short: str) -> str:
        """``remittances`` → ``remitflow-remittances``."""
        return f"{self.prefix}-{short}"

    @staticmethod
    def dlq(queue: str) -> str:
        return f"{queue}-dlq"

    @property
    def leases(self) -> str:
        return self.name("leases")

    @property
    def execution_status(self) -> str:
        """EventBridge rule and SQS queue for Step Functions execution status events."""
        return self.name("execution-status")

    @property
    def sfn_role(self) -> str:
        return self.name("stepfunctions")

    def table(self, short: str) -> str:
        """The API's short table names (``remittances``) to full ones."""
        return self.name(short)
