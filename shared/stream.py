"""Stream consumer: reads a job table's DynamoDB stream, shard by shard, with checkpoints.

Each shard is guarded by a lease (``stream:<table>:<shard id>``); the consumer reads
records in order, hands each batch to a processor and checkpoints the batch's last
sequence number only after the processor returned (its effects are durable), so a
restart resumes after the last checkpoint and replays at most one batch
(at-least-once; the processor is idempotent). A child shard is read only after its
parent reached ``SHARD_END``. The stream itself is behind :class:`StreamSource`, so
a multi-shard in-memory stream can drive the same code in tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shared.aws import error_code
from shared.leases import LeaseLost, Leases
from shared.logs import get_logger
from shared.metrics import STREAM_ITERATOR_AGE, STREAM_RECORDS, WORKER_ERRORS
from shared.worker import backoff_s, sleep_or_stop

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient

log = get_logger(__name__)
SHARD_END = "SHARD_END"
_ITERATOR_ERRORS = ("ExpiredIteratorException", "TrimmedDataAccessException")


@dataclass(frozen=True)
class Shard:
    shard_id: str
    parent_id: str | None


@dataclass(frozen=True)
class Record:
    event: str
    sequence: str
    keys: dict[str, Any]
    new_image: dict[str, Any] | None
    created_at: float | None


class StreamSource(Protocol):
    async def shards(self) -> list[Shard]: ...

    async def iterator(self, shard_id: str, after: str | None) -> str: ...

    async def read(self, iterator: str, limit: int) -> tuple[list[Record], str | None]: ...


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
            out += [Shard(s["ShardId"], s.get("ParentShardId")) for s in desc.get("Shards", [])]
            start = desc.get("LastEvaluatedShardId")
            if not start:
                return out

    async def iterator(self, shard_id: str, after: str | None) -> str:
        kwargs: dict[str, Any] = {"StreamArn": await self._stream_arn(), "ShardId": shard_id}
        if after:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=after)
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        return str((await self.streams.get_shard_iterator(**kwargs))["ShardIterator"])

    async def read(self, iterator: str, limit: int) -> tuple[list[Record], str | None]:
        resp = await self.streams.get_records(ShardIterator=iterator, Limit=limit)
        records = []
        for r in resp.get("Records", []):
            d = r.get("dynamodb", {})
            created = d.get("ApproximateCreationDateTime")
            records.append(Record(
                event=r.get("eventName", ""), sequence=d.get("SequenceNumber", ""),
                keys=dict(d.get("Keys", {})), new_image=dict(d["NewImage"]) if "NewImage" in d
                else None, created_at=created.timestamp() if created else None))
        return records, resp.get("NextShardIterator")


Processor = Callable[[list[Record]], Awaitable[None]]


class StreamConsumer:
    """Reads every shard it can lease and feeds ``processor`` in order, per shard."""

    def __init__(self, *, source: StreamSource, leases: Leases, table: str,
                 processor: Processor, events: frozenset[str] = frozenset({"INSERT"}),
                 batch_size: int = 100, poll_s: float = 0.5, idle_max_s: float = 5.0,
                 refresh_s: float = 10.0) -> None:
        self.name = f"stream:{table}"
        self.source = source
        self.leases = leases
        self.table = table
        self.processor = processor
        self.events = events
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.idle_max_s = idle_max_s
        self.refresh_s = refresh_s
        self._stop = asyncio.Event()
        self._readers: dict[str, asyncio.Task[None]] = {}
        self.finished: set[str] = set()
        self.healthy = True

    def shutdown(self) -> None:
        self._stop.set()

    def lease_key(self, shard_id: str) -> str:
        return f"stream:{self.table}:{shard_id}"

    @property
    def held(self) -> list[str]:
        return [s for s, t in self._readers.items() if not t.done()]

    async def run(self) -> None:
        """Discover shards, lease the ready ones, read them; on shutdown checkpoint and release."""
        failures = 0
        while not self._stop.is_set():
            try:
                await self._refresh()
                failures = 0
                self.healthy = True
            except Exception as exc:
                failures += 1
                self.healthy = False
                WORKER_ERRORS.labels(worker="stream").inc()
                log.warning("stream.refresh_failed", table=self.table, error=str(exc))
            await sleep_or_stop(self._stop, self.refresh_s if not failures
                                else backoff_s(failures, 0.5, 15.0))
        if self._readers:
            await asyncio.gather(*self._readers.values(), return_exceptions=True)

    async def _refresh(self) -> None:
        shards = await self.source.shards()
        known = {s.shard_id for s in shards}
        for shard in shards:
            if shard.shard_id in self.finished or shard.shard_id in self.held:
                continue
            parent_done = (shard.parent_id is None or shard.parent_id not in known
                           or shard.parent_id in self.finished
                           or await self.leases.read_checkpoint(
                               self.lease_key(shard.parent_id)) == SHARD_END)
            if not parent_done:
                continue
            if await self.leases.acquire(self.lease_key(shard.shard_id)):
                self._readers[shard.shard_id] = asyncio.create_task(self._read_shard(shard))
        for shard_id, task in list(self._readers.items()):
            if task.done() and shard_id not in self.finished:
                del self._readers[shard_id]
            elif not task.done() and not await self.leases.acquire(self.lease_key(shard_id)):
                log.warning("stream.lease_lost", table=self.table, shard=shard_id)
                task.cancel()

    async def _read_shard(self, shard: Shard) -> None:
        key = self.lease_key(shard.shard_id)
        checkpoint = await self.leases.read_checkpoint(key)
        if checkpoint == SHARD_END:
            self.finished.add(shard.shard_id)
            return
        log.info("stream.shard_acquired", table=self.table, shard=shard.shard_id,
                 checkpoint=checkpoint)
        iterator: str | None = None
        idle = self.poll_s
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    if iterator is None:
                        iterator = await self.source.iterator(shard.shard_id, checkpoint)
                    records, next_iterator = await self.source.read(iterator, self.batch_size)
                except Exception as exc:
                    failures += 1
                    if error_code(exc) in _ITERATOR_ERRORS:
                        log.info("stream.iterator_reset", shard=shard.shard_id,
                                 reason=error_code(exc))
                    else:
                        WORKER_ERRORS.labels(worker="stream").inc()
                        log.warning("stream.read_failed", shard=shard.shard_id, error=str(exc))
                    iterator = None
                    await sleep_or_stop(self._stop, backoff_s(failures, 0.2, 10.0))
                    continue
                failures = 0
                if records:
                    await self._process(shard, records)
                    checkpoint = records[-1].sequence
                    await self.leases.checkpoint(key, checkpoint)
                    newest = records[-1].created_at
                    if newest:
                        STREAM_ITERATOR_AGE.labels(table=self.table, shard=shard.shard_id).set(
                            max(0.0, time.time() - newest))
                    idle = self.poll_s
                else:
                    STREAM_ITERATOR_AGE.labels(table=self.table, shard=shard.shard_id).set(0)
                if next_iterator is None:
                    await self.leases.checkpoint(key, SHARD_END)
                    self.finished.add(shard.shard_id)
                    log.info("stream.shard_end", table=self.table, shard=shard.shard_id)
                    return
                iterator = next_iterator
                if not records:
                    await sleep_or_stop(self._stop, idle)
                    idle = min(self.idle_max_s, idle * 2)
        except LeaseLost:
            log.warning("stream.checkpoint_fenced", table=self.table, shard=shard.shard_id)
            return
        finally:
            if shard.shard_id not in self.finished:
                await self.leases.release(key)

    async def _process(self, shard: Shard, records: list[Record]) -> None:
        """Hand the batch over until it succeeds: a poison record is the processor's to park."""
        wanted = [r for r in records if r.event in self.events]
        for r in records:
            STREAM_RECORDS.labels(table=self.table, event=r.event or "?").inc()
        attempt = 0
        while wanted:
            try:
                await self.processor(wanted)
                return
            except Exception as exc:
                attempt += 1
                WORKER_ERRORS.labels(worker="stream").inc()
                log.warning("stream.batch_failed", table=self.table, shard=shard.shard_id,
                            error=repr(exc), attempt=attempt)
                if await sleep_or_stop(self._stop, backoff_s(attempt, 0.2, 10.0)):
                    raise asyncio.CancelledError from exc
