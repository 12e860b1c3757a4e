"""An in-memory, multi-shard stream behind :class:`~shared.stream.source.StreamSource`.

Shipped as the test fake of the stream source (like Temporal ships its testing
environment); the conformance suite in ``tests/shared/stream/test_stream_sources.py`` runs the
same cases against it and against DynamoDB Streams on the emulator.

The emulator's stream has one shard that never splits; this one has as many as a
test wants, and it can split and close them, expire iterators, trim old records
and throttle reads, raising the same error codes as DynamoDB Streams. Keys are
routed down the shard lineage (a key of a split shard goes to one of its
children), so per-key order across splits is real. Sequence numbers are global,
increasing and fixed-width, so they compare as strings.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from shared.stream.leases import LATEST, TRIM_HORIZON
from shared.stream.source import Record, Shard


def _error(code: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message or code}}, "GetRecords")


def _hash(key: str) -> int:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)


@dataclass
class _Shard:
    shard_id: str
    parents: tuple[str, ...]
    records: list[Record] = field(default_factory=list)
    trimmed: int = 0           # records[:trimmed] are gone
    closed: bool = False
    children: list[str] = field(default_factory=list)


@dataclass
class _Iterator:
    shard_id: str
    index: int                 # next record to return
    chain: int                 # one reader's successive iterators share a chain
    generation: int


class MemoryStream:
    """A DynamoDB-Streams-like stream held in memory. Not thread-safe; one event loop."""

    def __init__(self, shards: int = 1) -> None:
        self._shards: dict[str, _Shard] = {}
        self._roots: list[str] = []
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self._chains = itertools.count(1)
        self._tokens = itertools.count(1)
        self._iterators: dict[str, _Iterator] = {}
        self._generation = 0
        self._throttle = 0
        self.reads = 0
        self.readers: dict[str, dict[int, float]] = {}
        self.max_readers = 0
        for _ in range(shards):
            self._roots.append(self._new_shard(()))

    # -- the test's controls ------------------------------------------------------------

    def put(self, key: str, event: str = "INSERT", image: dict[str, Any] | None = None
            ) -> Record:
        """Append a record for ``key`` to the open shard its lineage leads to."""
        h = _hash(key)
        shard = self._shards[self._roots[h % len(self._roots)]]
        while shard.closed:
            shard = self._shards[shard.children[h % len(shard.children)]]
        record = Record(event=event, sequence=f"{next(self._seq):021d}",
                        keys={"request_id": {"S": key}},
                        new_image=None if event == "REMOVE"
                        else image if image is not None else {"request_id": {"S": key}},
                        created_at=time.time())
        shard.records.append(record)
        return record

    def split(self, shard_id: str, children: int = 2) -> list[str]:
        """Close ``shard_id`` and open ``children`` child shards (1 = a plain rollover)."""
        shard = self._shards[shard_id]
        assert not shard.closed, f"{shard_id} is already closed"
        shard.closed = True
        shard.children = [self._new_shard((shard_id,)) for _ in range(children)]
        return list(shard.children)

    def close(self, shard_id: str) -> list[str]:
        """A shard reaching its end (every ~4 hours on AWS): one child takes over."""
        return self.split(shard_id, 1)

    def trim(self, shard_id: str, count: int) -> None:
        """Drop the oldest ``count`` records of a shard (past retention)."""
        shard = self._shards[shard_id]
        shard.trimmed = min(len(shard.records), shard.trimmed + count)

    def expire_iterators(self) -> None:
        """Every iterator handed out so far is now expired (as after 15 minutes)."""
        self._generation += 1

    def throttle(self, reads: int) -> None:
        """The next ``reads`` GetRecords calls fail with a throughput error (0: none)."""
        self._throttle = self._throttle + reads if reads > 0 else 0

    def open_shards(self) -> list[str]:
        return [s.shard_id for s in self._shards.values() if not s.closed]

    def records(self, shard_id: str | None = None) -> list[Record]:
        shards = [self._shards[shard_id]] if shard_id else list(self._shards.values())
        return [r for s in shards for r in s.records]

    # -- StreamSource ------------------------------------------------------------------

    async def shards(self) -> list[Shard]:
        return [Shard(s.shard_id, s.parents, s.closed) for s in self._shards.values()]

    async def iterator(self, shard_id: str, position: str) -> str:
        shard = self._shards.get(shard_id)
        if shard is None:
            raise _error("ResourceNotFoundException", f"no shard {shard_id}")
        if position == TRIM_HORIZON:
            index = shard.trimmed
        elif position == LATEST:
            index = len(shard.records)
        else:
            index = self._after(shard, position)
            if index < shard.trimmed:
                raise _error("TrimmedDataAccessException", f"{position} is trimmed")
        return self._issue(_Iterator(shard_id, index, next(self._chains), self._generation))

    async def read(self, iterator: str, limit: int) -> tuple[list[Record], str | None]:
        self.reads += 1
        it = self._iterators.get(iterator)
        if it is None or it.generation != self._generation:
            raise _error("ExpiredIteratorException", "iterator expired")
        if self._throttle:
            self._throttle -= 1
            raise _error("ProvisionedThroughputExceededException", "slow down")
        shard = self._shards.get(it.shard_id)
        if shard is None:
            raise _error("ResourceNotFoundException", f"no shard {it.shard_id}")
        if it.index < shard.trimmed:
            raise _error("TrimmedDataAccessException", "records before the trim horizon")
        self._count_reader(it)
        out = shard.records[it.index:it.index + max(1, limit)]
        end = it.index + len(out)
        if shard.closed and end >= len(shard.records):
            return out, None
        return out, self._issue(_Iterator(it.shard_id, end, it.chain, self._generation))

    # -- internals ---------------------------------------------------------------------

    def _new_shard(self, parents: tuple[str, ...]) -> str:
        shard_id = f"shardId-{next(self._ids):08d}"
        self._shards[shard_id] = _Shard(shard_id, parents)
        return shard_id

    @staticmethod
    def _after(shard: _Shard, sequence: str) -> int:
        return sum(1 for r in shard.records if r.sequence <= sequence)

    def _issue(self, it: _Iterator) -> str:
        token = f"it-{next(self._tokens)}"
        self._iterators[token] = it
        return token

    def _count_reader(self, it: _Iterator, window_s: float = 1.0) -> None:
        """Readers of a shard: iterator chains that read it within the last second."""
        now = time.monotonic()
        chains = self.readers.setdefault(it.shard_id, {})
        chains[it.chain] = now
        for chain, seen in list(chains.items()):
            if now - seen > window_s:
                del chains[chain]
        self.max_readers = max(self.max_readers, len(chains))
