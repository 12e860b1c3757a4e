"""Where stream records come from: the :class:`StreamSource` protocol and DynamoDB's.

The consumer (:mod:`shared.stream.consumer`) only talks to this interface, so the in-memory
multi-shard stream of the tests (:mod:`shared.stream.memory`) drives the same code path
as DynamoDB Streams in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shared.stream.leases import LATEST, TRIM_HORIZON

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient


@dataclass(frozen=True)
class Shard:
    shard_id: str
    parent_ids: tuple[str, ...] = ()
    closed: bool = False


@dataclass(frozen=True)
class Record:
    event: str
    sequence: str
    keys: dict[str, Any]
    new_image: dict[str, Any] | None
    created_at: float | None
    old_image: dict[str, Any] | None = None
    #: who made the change, when not a caller: DynamoDB's TTL process for an expiry
    user_identity: dict[str, str] | None = None

    @property
    def expired(self) -> bool:
        """A ``REMOVE`` made by DynamoDB's TTL process (``userIdentity`` type ``Service``,
        principal ``dynamodb.amazonaws.com``), not by a caller's ``DeleteItem``."""
        who = self.user_identity or {}
        return (self.event == "REMOVE"
                and (who.get("Type") or who.get("type")) == "Service"
                and (who.get("PrincipalId") or who.get("principalId"))
                == "dynamodb.amazonaws.com")


def record_of(raw: dict[str, Any]) -> Record:
    """One ``GetRecords`` record (as the SDK parses it) as a :class:`Record`."""
    d = raw.get("dynamodb", {})
    created = d.get("ApproximateCreationDateTime")
    return Record(
        event=raw.get("eventName", ""), sequence=d.get("SequenceNumber", ""),
        keys=dict(d.get("Keys", {})),
        new_image=dict(d["NewImage"]) if "NewImage" in d else None,
        created_at=created.timestamp() if hasattr(created, "timestamp") else None,
        old_image=dict(d["OldImage"]) if "OldImage" in d else None,
        user_identity=dict(raw["userIdentity"]) if raw.get("userIdentity") else None)


class StreamSource(Protocol):
    """A stream: its shards, iterators at a position, and reads (DynamoDB's error codes)."""

    async def shards(self) -> list[Shard]: ...

    async def iterator(self, shard_id: str, position: str) -> str:
        """``position``: TRIM_HORIZON, LATEST, or a sequence number to read *after*."""
        ...

    async def read(self, iterator: str, limit: int) -> tuple[list[Record], str | None]:
        """Records and the next iterator; ``None`` once a closed shard is read to its end."""
        ...


class DynamoDBStreamSource:
    """The real thing: ``dynamodbstreams`` for the table's latest stream."""

    def __init__(self, dynamodb: DynamoDBClient, streams: DynamoDBStreamsClient,
                 table: str) -> None:
        self.dynamodb = dynamodb
        self.streams = streams
        self.table = table
        self._arn: str | None = None

    async def _stream_arn(self) -> str:
        if self._arn is None:
            desc = await self.dynamodb.describe_table(TableName=self.table)
            self._arn = desc["Table"]["LatestStreamArn"]
        return self._arn

    async def shards(self) -> list[Shard]:
        arn = await self._stream_arn()
        out: list[Shard] = []
        start: str | None = None
        while True:
            kwargs: dict[str, Any] = {"StreamArn": arn}
            if start:
                kwargs["ExclusiveStartShardId"] = start
            desc = (await self.streams.describe_stream(**kwargs))["StreamDescription"]
            out += [Shard(s["ShardId"],
                          (s["ParentShardId"],) if s.get("ParentShardId") else (),
                          "EndingSequenceNumber" in s.get("SequenceNumberRange", {}))
                    for s in desc.get("Shards", [])]
            start = desc.get("LastEvaluatedShardId")
            if not start:
                return out

    async def iterator(self, shard_id: str, position: str) -> str:
        kwargs: dict[str, Any] = {"StreamArn": await self._stream_arn(), "ShardId": shard_id}
        if position in (TRIM_HORIZON, LATEST):
            kwargs["ShardIteratorType"] = position
        else:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=position)
        return str((await self.streams.get_shard_iterator(**kwargs))["ShardIterator"])

    async def read(self, iterator: str, limit: int) -> tuple[list[Record], str | None]:
        resp = await self.streams.get_records(ShardIterator=iterator, Limit=limit)
        records = [record_of(dict(r)) for r in resp.get("Records", [])]
        return records, resp.get("NextShardIterator")
