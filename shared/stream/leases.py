"""Shard leases: which consumer reads which stream shard, and from where (see docs/stream.md).

One item per shard in ``<prefix>-leases``, in the group ``shard:<table>`` (the
partition: a round reads its own table's leases with one Query, nothing else), key
``shard:<table>:<shard id>``::

    owner         the consumer reading it (absent: unowned)
    counter       bumped by every write of the owner and by every take
    checkpoint    TRIM_HORIZON | LATEST | <sequence number> (after it) | SHARD_END
    parents       parent shard ids (lineage)
    heartbeat_at  wall-clock time of the last owner write (for humans only)
    steal_by      a hand-off request from an under-loaded consumer

Guarantees:

* **Fencing.** Every write of an owner (renew, checkpoint, release, hand-off, finish)
  is conditioned on ``owner = me AND counter = <the counter I last wrote>`` and
  increments the counter; so does every take. After someone else took the lease,
  the previous owner's next write fails with :class:`LeaseLost`: a zombie cannot
  move the checkpoint.
* **Expiry without clock sync.** A lease is expired for an observer when its counter
  has not moved for ``failover_s`` on *that observer's* monotonic clock
  (:class:`shared.stream.balance.ExpiryObserver`); hosts never compare timestamps.
* **No steal mid-checkpoint.** Stealing is a request (``steal_by``): only the owner
  moves its lease to the requester, at a batch boundary after its checkpoint.
* **Balance without storms.** :func:`shared.stream.balance.plan` takes unowned and
  expired leases first, up to the fair share, and asks at most ``max_steal`` leases
  per round from the most loaded owner only while that owner is above the fair share.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shared.aws.clients import error_code
from shared.aws.dynamo import item_after_failed_condition
from shared.aws.names import LEASE_GROUP, lease_item_key
from shared.logs import get_logger
from shared.metrics import (
    LEASE_AMBIGUOUS_WRITES,
    STREAM_CHECKPOINT_CONFLICTS,
    STREAM_LEASE_WRITES,
)

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

TRIM_HORIZON = "TRIM_HORIZON"
LATEST = "LATEST"
SHARD_END = "SHARD_END"
NOT_STARTED = frozenset({TRIM_HORIZON, LATEST})
log = get_logger(__name__)


class ShardInfo(Protocol):
    """What lease sync needs to know of a shard (:class:`shared.stream.consumer.Shard` has it)."""

    @property
    def shard_id(self) -> str: ...

    @property
    def parent_ids(self) -> tuple[str, ...]: ...

    @property
    def closed(self) -> bool: ...


class LeaseLost(Exception):
    """The lease is no longer ours (taken, or our counter is stale): stop its work."""


@dataclass(frozen=True)
class ShardLease:
    key: str
    shard_id: str
    owner: str | None
    counter: int
    checkpoint: str
    parents: tuple[str, ...] = ()
    steal_by: str | None = None
    heartbeat_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.checkpoint == SHARD_END

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ShardLease:
        return cls(key=item["lease_key"]["S"], shard_id=item["shard_id"]["S"],
                   owner=item["owner"]["S"] if "owner" in item else None,
                   counter=int(item.get("counter", {"N": "0"})["N"]),
                   checkpoint=item.get("checkpoint", {"S": TRIM_HORIZON})["S"],
                   parents=tuple(v["S"] for v in item.get("parents", {"L": []})["L"]),
                   steal_by=item["steal_by"]["S"] if "steal_by" in item else None,
                   heartbeat_at=(float(item["heartbeat_at"]["N"]) if "heartbeat_at" in item
                                 else None))


class ShardLeaseTable:
    """The lease items of one stream table, as seen and written by one consumer (``owner``)."""

    def __init__(self, dynamodb: DynamoDBClient, table: str, stream_table: str,
                 owner: str) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.stream_table = stream_table
        self.owner = owner

    @property
    def group(self) -> str:
        """This stream table's partition of the leases table."""
        return f"shard:{self.stream_table}"

    def key(self, shard_id: str) -> str:
        return f"shard:{self.stream_table}:{shard_id}"

    def _item_key(self, key: str) -> dict[str, Any]:
        return lease_item_key(self.group, key)

    async def current(self) -> list[ShardLease]:
        """Every lease of this stream table, strongly consistent: one Query of its group,
        so a round reads its own leases and nothing else (sessions, leadership, other
        tables' leases and file records never cost it a read)."""
        out: list[ShardLease] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True,
            "KeyConditionExpression": "#g = :g",
            "ExpressionAttributeNames": {"#g": LEASE_GROUP},
            "ExpressionAttributeValues": {":g": {"S": self.group}}}
        while True:
            resp = await self.dynamodb.query(**kwargs)
            out += [ShardLease.from_item(i) for i in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                return sorted(out, key=lambda lease: lease.shard_id)
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    async def create(self, shard_id: str, parents: tuple[str, ...], checkpoint: str) -> bool:
        """Create an unowned lease if none exists; False when it already did."""
        try:
            await self.dynamodb.put_item(
                TableName=self.table, ConditionExpression="attribute_not_exists(lease_key)",
                Item={**self._item_key(self.key(shard_id)), "shard_id": {"S": shard_id},
                      "stream_table": {"S": self.stream_table}, "counter": {"N": "0"},
                      "checkpoint": {"S": checkpoint},
                      "parents": {"L": [{"S": p} for p in parents]}})
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def take(self, lease: ShardLease) -> ShardLease | None:
        """Take ``lease`` as last observed (unowned or expired); None if it moved meanwhile."""
        try:
            return await self._write(
                lease, "SET #owner = :me", "#counter = :c AND #cp <> :end",
                {":me": {"S": self.owner}, ":end": {"S": SHARD_END}}, remove="steal_by",
                kind="take", adopt=False)   # the round takes back what names us
        except LeaseLost:
            return None

    async def renew(self, lease: ShardLease) -> ShardLease:
        """Bump the counter (heartbeat); the result carries any pending ``steal_by``."""
        return await self._owned(lease, "SET #owner = :me", {}, kind="renew")

    async def checkpoint(self, lease: ShardLease, position: str) -> ShardLease:
        """Store ``position``; raises :class:`LeaseLost` (and counts a conflict) if fenced."""
        try:
            return await self._owned(lease, "SET #owner = :me, #cp = :pos",
                                     {":pos": {"S": position}}, kind="checkpoint")
        except LeaseLost:
            STREAM_CHECKPOINT_CONFLICTS.labels(table=self.stream_table).inc()
            raise

    async def finish(self, lease: ShardLease) -> ShardLease:
        """Checkpoint ``SHARD_END`` and give the lease up, in one write."""
        return await self._write(lease, "SET #cp = :end", self._mine,
                                 {":me": {"S": self.owner}, ":end": {"S": SHARD_END}},
                                 remove="#owner, steal_by", kind="finish")

    async def release(self, lease: ShardLease, position: str | None = None) -> bool:
        """Give the lease up so any consumer may take it at once (no failover wait).

        ``position``, when given, is checkpointed in the same write (what was processed
        since the last checkpoint). False when the lease was no longer ours.
        """
        update, values = self._position(position)
        try:
            await self._write(lease, update, self._mine, {":me": {"S": self.owner}, **values},
                              remove="#owner, steal_by", kind="release")
        except LeaseLost:
            return False
        return True

    async def hand_off(self, lease: ShardLease, to: str, position: str | None = None) -> bool:
        """Move the lease to the consumer that asked for it, checkpointing ``position``
        (what was processed) in the same write; False when it was no longer ours."""
        update, values = self._position(position)
        try:
            await self._write(lease, f"{update}, #owner = :to", self._mine,
                              {":me": {"S": self.owner}, ":to": {"S": to}, **values},
                              remove="steal_by", kind="handoff")
        except LeaseLost:
            return False
        return True

    @staticmethod
    def _position(position: str | None) -> tuple[str, dict[str, Any]]:
        if position is None:
            return "SET #cp = #cp", {}
        return "SET #cp = :pos", {":pos": {"S": position}}

    async def request_steal(self, lease: ShardLease) -> bool:
        """Ask ``lease.owner`` to hand ``lease`` over; does not touch the counter."""
        try:
            await self.dynamodb.update_item(
                TableName=self.table, Key=self._item_key(lease.key),
                UpdateExpression="SET steal_by = :me",
                ConditionExpression="#owner = :victim AND attribute_not_exists(steal_by)",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": self.owner},
                                           ":victim": {"S": lease.owner or ""}})
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def delete(self, lease: ShardLease) -> None:
        """Remove a finished lease (only while it is still ``SHARD_END``)."""
        try:
            await self.dynamodb.delete_item(
                TableName=self.table, Key=self._item_key(lease.key),
                ConditionExpression="checkpoint = :end",
                ExpressionAttributeValues={":end": {"S": SHARD_END}})
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    async def sync(self, shards: Sequence[ShardInfo], leases: list[ShardLease],
                   start_position: str = TRIM_HORIZON) -> bool:
        """Create leases for listed shards (parents first), delete finished ones; True if any.

        A new lease starts at TRIM_HORIZON; only on a first deployment (no lease yet for
        this table) with ``start_position=LATEST`` do open shards start at LATEST and
        closed ones count as finished. A shard with a leased descendant gets no lease
        (it was finished and cleaned up). A finished lease is deleted once every child
        has a lease that was taken or has progressed, or once its shard left the stream.
        """
        listed = {s.shard_id: s for s in shards}
        children: dict[str, list[str]] = defaultdict(list)
        for s in shards:
            for p in s.parent_ids:
                children[p].append(s.shard_id)
        by_shard = {lease.shard_id: lease for lease in leases}

        def depth(s: ShardInfo) -> int:
            return 1 + max((depth(listed[p]) for p in s.parent_ids if p in listed), default=0)

        def leased_descendant(shard_id: str) -> bool:
            return any(c in by_shard or leased_descendant(c) for c in children[shard_id])

        changed = False
        for s in sorted(shards, key=depth):
            if s.shard_id in by_shard or leased_descendant(s.shard_id):
                continue
            position = TRIM_HORIZON
            if not leases and start_position == LATEST:
                position = SHARD_END if s.closed else LATEST
            if await self.create(s.shard_id, s.parent_ids, position):
                changed = True
                log.info("stream.lease_created", table=self.stream_table, shard=s.shard_id,
                         parents=list(s.parent_ids), checkpoint=position)
        for lease in leases:
            kids = [by_shard.get(c) for c in children[lease.shard_id]]
            started = bool(kids) and all(
                k is not None and (k.owner is not None or k.checkpoint not in NOT_STARTED)
                for k in kids)
            if lease.finished and (started or lease.shard_id not in listed):
                await self.delete(lease)
                changed = True
                log.info("stream.lease_deleted", table=self.stream_table, shard=lease.shard_id)
        return changed

    _mine = "#owner = :me AND #counter = :c"

    async def _owned(self, lease: ShardLease, update: str, values: dict[str, Any],
                     kind: str) -> ShardLease:
        return await self._write(lease, update, self._mine, {":me": {"S": self.owner}, **values},
                                 kind=kind)

    async def _write(self, lease: ShardLease, update: str, condition: str,
                     values: dict[str, Any], remove: str | None = None, *,
                     kind: str, adopt: bool = True) -> ShardLease:
        STREAM_LEASE_WRITES.labels(table=self.stream_table, kind=kind).inc()
        token = uuid.uuid4().hex
        expression = (f"{update}, #counter = #counter + :one, heartbeat_at = :now, "
                      "write_token = :tok" + (f" REMOVE {remove}" if remove else ""))
        names = {"#counter": "counter"}
        for alias, name in (("#owner", "owner"), ("#cp", "checkpoint")):
            if alias in expression or alias in condition:
                names[alias] = name
        key = self._item_key(lease.key)
        try:
            resp = await self.dynamodb.update_item(
                TableName=self.table, Key=key,
                UpdateExpression=expression, ConditionExpression=condition,
                ExpressionAttributeNames=names, ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ExpressionAttributeValues={**values, ":c": {"N": str(lease.counter)},
                                           ":one": {"N": "1"}, ":tok": {"S": token},
                                           ":now": {"N": f"{time.time():.3f}"}})
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            item = await item_after_failed_condition(self.dynamodb, self.table, key, exc)
            if item is None:
                raise LeaseLost(lease.key) from exc
            seen = ShardLease.from_item(item)
            if item.get("write_token", {}).get("S") == token:
                # This very write committed while its answer was lost, then botocore
                # retried it against our own new counter.
                LEASE_AMBIGUOUS_WRITES.labels(table=self.stream_table).inc()
                log.info("stream.lease_write_recognised", shard=lease.shard_id,
                         counter=seen.counter)
                return seen
            if adopt and seen.owner == self.owner and not seen.finished:
                # The lease still names us at a counter we never saw: an earlier write
                # of ours committed and its call still failed (a 5xx or a timeout after
                # the SDK's retries). Nobody took it (a take writes the taker's name),
                # so it is ours: write again against what is there.
                LEASE_AMBIGUOUS_WRITES.labels(table=self.stream_table).inc()
                log.info("stream.lease_readopted", shard=lease.shard_id, kind=kind,
                         counter=seen.counter, believed=lease.counter)
                return await self._write(seen, update, condition, values, remove,
                                         kind=kind, adopt=False)
            raise LeaseLost(lease.key) from exc
        return ShardLease.from_item(resp["Attributes"])
