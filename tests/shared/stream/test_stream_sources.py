"""One suite over every stream source, so the in-memory fake cannot drift from DynamoDB.

Like saq runs one queue suite over each backend: each case below runs against
``MemoryStream`` and against DynamoDB Streams on the emulator. Cases that need
something the emulator's stream cannot produce (a second shard, a split, iterator
expiry, trimming: see docs/stream.md) run on the backends that can, and the
``capabilities`` of each backend say which, so nothing is silently skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import pytest
from botocore.exceptions import ClientError

from shared.aws.clients import error_code
from shared.stream.leases import LATEST, TRIM_HORIZON
from shared.stream.memory import MemoryStream
from shared.stream.source import DynamoDBStreamSource, Record, StreamSource
from tests.helpers import Env

SPLIT, EXPIRE, TRIM = "split", "expire", "trim"


class Backend(Protocol):
    @property
    def source(self) -> StreamSource: ...

    @property
    def capabilities(self) -> frozenset[str]: ...

    async def insert(self, key: str) -> None: ...

    async def modify(self, key: str) -> None: ...

    async def remove(self, key: str) -> None: ...


@dataclass
class Memory:
    stream: MemoryStream = field(default_factory=MemoryStream)
    capabilities: frozenset[str] = frozenset({SPLIT, EXPIRE, TRIM})

    @property
    def source(self) -> StreamSource:
        return self.stream

    async def insert(self, key: str) -> None:
        self.stream.put(key, "INSERT", {"request_id": {"S": key}, "n": {"N": "1"}})

    async def modify(self, key: str) -> None:
        self.stream.put(key, "MODIFY", {"request_id": {"S": key}, "n": {"N": "2"}})

    async def remove(self, key: str) -> None:
        self.stream.put(key, "REMOVE", None)


@dataclass
class Dynamo:
    env: Env
    table: str
    source: StreamSource
    capabilities: frozenset[str] = frozenset()

    async def insert(self, key: str) -> None:
        await self.env.clients.dynamodb.put_item(
            TableName=self.table, Item={"request_id": {"S": key}, "n": {"N": "1"}})

    async def modify(self, key: str) -> None:
        await self.env.clients.dynamodb.put_item(
            TableName=self.table, Item={"request_id": {"S": key}, "n": {"N": "2"}})

    async def remove(self, key: str) -> None:
        await self.env.clients.dynamodb.delete_item(TableName=self.table,
                                                    Key={"request_id": {"S": key}})


@pytest.fixture(params=["memory", "dynamodb"])
async def backend(request: pytest.FixtureRequest, env: Env) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield Memory()
        return
    table = f"{env.settings.prefix}-conformance-{uuid.uuid4().hex[:6]}"
    ddb = env.clients.dynamodb
    await ddb.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    yield Dynamo(env, table, DynamoDBStreamSource(ddb, env.clients.streams, table))
    await ddb.delete_table(TableName=table)


async def read_all(source: StreamSource, shard: str, position: str = TRIM_HORIZON,
                   limit: int = 100) -> tuple[list[Record], str | None]:
    """Every record available now from ``position``, and the iterator after them."""
    iterator: str | None = await source.iterator(shard, position)
    out: list[Record] = []
    while iterator is not None:
        records, nxt = await source.read(iterator, limit)
        out += records
        if not records:
            return out, nxt
        iterator = nxt
    return out, None


async def only_shard(source: StreamSource) -> str:
    shards = [s for s in await source.shards() if not s.closed]
    assert shards, "an open shard"
    return shards[0].shard_id


def need(backend: Backend, capability: str) -> None:
    if capability not in backend.capabilities:
        pytest.skip(f"{type(backend).__name__} cannot produce '{capability}' "
                    "(docs/stream.md: the emulator's stream has one shard, no expiry, no trim)")


# --- records and ordering ---------------------------------------------------------------

async def test_records_in_order_with_events_keys_images(backend: Backend) -> None:
    await backend.insert("a")
    await backend.insert("b")
    await backend.modify("a")
    await backend.remove("b")
    records, nxt = await read_all(backend.source, await only_shard(backend.source))
    assert [(r.event, r.keys["request_id"]["S"]) for r in records] == [
        ("INSERT", "a"), ("INSERT", "b"), ("MODIFY", "a"), ("REMOVE", "b")]
    assert records[0].new_image is not None and records[0].new_image["n"] == {"N": "1"}
    assert records[2].new_image is not None and records[2].new_image["n"] == {"N": "2"}
    assert records[3].new_image is None, "a REMOVE carries no new image"
    assert all(r.created_at for r in records)
    sequences = [int(r.sequence) for r in records]
    assert sequences == sorted(sequences) and len(set(sequences)) == 4
    assert nxt is not None, "an open shard always hands out a next iterator"


async def test_after_sequence_resumes_after_that_record(backend: Backend) -> None:
    for key in ("a", "b", "c"):
        await backend.insert(key)
    shard = await only_shard(backend.source)
    records, _ = await read_all(backend.source, shard)
    rest, _ = await read_all(backend.source, shard, records[0].sequence)
    assert [r.keys["request_id"]["S"] for r in rest] == ["b", "c"]


async def test_latest_sees_only_new_records(backend: Backend) -> None:
    await backend.insert("old")
    shard = await only_shard(backend.source)
    iterator = await backend.source.iterator(shard, LATEST)
    await backend.insert("new")
    records, _ = await backend.source.read(iterator, 100)
    assert [r.keys["request_id"]["S"] for r in records] == ["new"]


async def test_limit_is_honoured_and_the_rest_follows(backend: Backend) -> None:
    for n in range(5):
        await backend.insert(f"k{n}")
    iterator = await backend.source.iterator(await only_shard(backend.source), TRIM_HORIZON)
    first, nxt = await backend.source.read(iterator, 2)
    assert len(first) == 2 and nxt
    rest, _ = await read_all(backend.source, await only_shard(backend.source),
                             first[-1].sequence)
    assert [r.keys["request_id"]["S"] for r in first + rest] == [f"k{n}" for n in range(5)]


async def test_empty_open_shard_reads_nothing_and_keeps_an_iterator(backend: Backend) -> None:
    iterator = await backend.source.iterator(await only_shard(backend.source), TRIM_HORIZON)
    records, nxt = await backend.source.read(iterator, 10)
    assert records == [] and nxt is not None


# --- shard end and lineage -------------------------------------------------------------

async def test_closed_shard_ends_and_children_name_their_parent(backend: Backend) -> None:
    need(backend, SPLIT)
    assert isinstance(backend, Memory)
    await backend.insert("a")
    parent = await only_shard(backend.source)
    children = backend.stream.split(parent)
    records, nxt = await read_all(backend.source, parent)
    assert [r.keys["request_id"]["S"] for r in records] == ["a"] and nxt is None
    shards = {s.shard_id: s for s in await backend.source.shards()}
    assert shards[parent].closed
    assert all(shards[c].parent_ids == (parent,) and not shards[c].closed for c in children)


# --- expired and trimmed iterators -------------------------------------------------------

async def test_expired_iterator_is_refused_with_dynamodb_code(backend: Backend) -> None:
    need(backend, EXPIRE)
    assert isinstance(backend, Memory)
    iterator = await backend.source.iterator(await only_shard(backend.source), TRIM_HORIZON)
    backend.stream.expire_iterators()
    with pytest.raises(ClientError) as caught:
        await backend.source.read(iterator, 10)
    assert error_code(caught.value) == "ExpiredIteratorException"


async def test_trimmed_position_is_refused_with_dynamodb_code(backend: Backend) -> None:
    need(backend, TRIM)
    assert isinstance(backend, Memory)
    for key in ("a", "b", "c"):
        await backend.insert(key)
    shard = await only_shard(backend.source)
    records, _ = await read_all(backend.source, shard)
    backend.stream.trim(shard, 2)
    with pytest.raises(ClientError) as caught:
        await backend.source.iterator(shard, records[0].sequence)
    assert error_code(caught.value) == "TrimmedDataAccessException"
    rest, _ = await read_all(backend.source, shard)
    assert [r.keys["request_id"]["S"] for r in rest] == ["c"], "TRIM_HORIZON starts after"
