"""File intake: S3 ``ObjectCreated`` events in, one remittance job per bank transaction out.

Flow and guarantees (``docs/bankfiles.md``, "The path"):

- The partner is the key's first segment (``FIRSTBANK/2026-11-24/status.xml``).
- The object is streamed (``GetObject``, ``If-Match`` its ETag) to a temporary
  file, refused past ``max_bytes``; the reader validates the whole file before
  the first transaction is written, in a thread so the event loop stays live.
- Each transaction goes through the same rule as a JSON partner message
  (:func:`shared.pipeline.intake.store_parsed`: model validation, conditional
  put, duplicate acknowledged, conflicting duplicate quarantined), so a
  re-uploaded file or a redelivered event creates no new job.
- Progress (next transaction index) is saved every ``checkpoint_every``
  transactions and after each rejection; a crashed process resumes there, and
  the transactions handled since are harmless replays.
- A bad file is tagged ``remitflow-quarantine=<reason>`` and reported on the
  DLQ; a bad transaction is reported on the DLQ alone (``not_final`` only
  counted) and the rest of the file goes on.
- The SQS message stays invisible to others while the file is handled, and is
  deleted only when the file is finished (or proven gone or superseded). On
  shutdown a file stops at the next batch, saves its progress and hands the
  message back, so another process resumes it at once.
"""

from __future__ import annotations

import asyncio
import functools
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import islice
from typing import IO, TYPE_CHECKING, Any

from services.enrichment.bankfiles import (
    FileRejected,
    Transaction,
    TransactionRejected,
    read_bank_file,
)
from services.enrichment.bankfiles.mapping import PARTNER
from services.enrichment.handler import parse_partner_message
from shared.aws.clients import error_code
from shared.aws.sqs import SqsWorker
from shared.files.drop import ObjectRef, object_events
from shared.files.progress import FileProgress
from shared.logs import get_logger
from shared.metrics import DLQ_MESSAGES, FILE_DURATION, FILE_RECORDS, FILES, WORKER_ERRORS
from shared.pipeline.intake import InvalidMessage, Parsed, conflict_detail, store_parsed
from shared.pipeline.jobs import JobStore, content_hash
from shared.retry import Backoff
from shared.worker import fault_point

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

log = get_logger(__name__)

QUARANTINE_TAG = "remitflow-quarantine"
#: Fields that name the file, not the payment: left out of the content hash, so
#: the same transaction in a re-sent file (new key, new message id) is a duplicate.
FILE_FIELDS = frozenset({"source_file", "message_id"})
Item = Transaction | TransactionRejected


@dataclass(frozen=True)
class FileOptions:
    max_bytes: int
    checkpoint_every: int
    max_in_flight: int = 2
    wait_s: int = 10
    visibility_s: int = 60
    batch: int = 20
    backoff: Backoff | None = None    # a file that failed for now: hidden for longer each time


class _Interrupted(Exception):
    """Shutdown came mid-file: progress saved, the message goes back to the queue."""


class _Skip(Exception):
    """The object is gone or was overwritten (its newer version has its own event)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def partner_of(key: str) -> str | None:
    """``FIRSTBANK/any/path.xml`` → ``FIRSTBANK``; None when the prefix is not a partner code."""
    head, sep, rest = key.partition("/")
    return head if sep and rest and PARTNER.match(head) else None


def to_parsed(notification: dict[str, Any]) -> Parsed:
    """A mapped transaction as the JSON intake would parse it (same validation)."""
    parsed = parse_partner_message(json.dumps(notification, sort_keys=True))
    return replace(parsed, content_hash=content_hash(
        {k: v for k, v in notification.items() if k not in FILE_FIELDS}))


def _take(items: Iterator[Item], n: int) -> list[Item]:
    return list(islice(items, n))


class FileIntake(SqsWorker):
    """One file-drop queue → the enrichment job table."""

    def __init__(self, *, sqs: SQSClient, s3: S3Client, queue_name: str, queue_url: str,
                 dlq_url: str, store: JobStore, progress: FileProgress,
                 options: FileOptions) -> None:
        super().__init__(sqs, queue_name, queue_url, worker="file_intake",
                         max_in_flight=options.max_in_flight, wait_s=options.wait_s,
                         visibility_s=options.visibility_s, with_attributes=True,
                         backoff=options.backoff)
        self.s3 = s3
        self.dlq_url = dlq_url
        self.store = store
        self.progress = progress
        self.options = options

    async def dispatch(self, messages: list[MessageTypeDef]) -> None:
        for message in messages:
            await self.receiver.slots.acquire()
            self.spawn(self._handle(message))

    async def _handle(self, message: MessageTypeDef) -> None:
        keeper = asyncio.create_task(self.receiver.keep_visible(
            [message], every_s=max(1.0, self.visibility_s / 3)))
        done, failure = False, None
        try:
            done = await self.handle_message(message)
        except _Interrupted:
            await self.receiver.set_visibility([message], 0)
        except Exception as exc:  # retried: hidden for a delay growing with receives
            failure = exc
        finally:
            keeper.cancel()
            self.receiver.slots.release()
        if done:
            await self.deleter.delete(message)
        elif failure is not None:
            WORKER_ERRORS.labels(worker="file_intake").inc()
            delay = await self.defer(message)
            log.error("bankfile.failed", queue=self.queue, message_id=message.get("MessageId"),
                      error=repr(failure), delay_s=delay)

    async def handle_message(self, message: MessageTypeDef) -> bool:
        """Handle every file the event names; True when the message may be deleted."""
        try:
            refs = object_events(message.get("Body", ""))
        except InvalidMessage as exc:
            await self._report(exc.reason, exc.detail, message.get("Body") or "-", {})
            return True
        for ref in refs:
            started = time.monotonic()
            outcome = await self.handle_file(ref)
            FILES.labels(queue=self.queue, outcome=outcome).inc()
            FILE_DURATION.labels(queue=self.queue).observe(time.monotonic() - started)
        return True

    async def handle_file(self, ref: ObjectRef) -> str:
        """One file version, start (or resume) to end; returns the outcome label."""
        progress = await self.progress.get(ref)
        if progress.finished:
            log.info("bankfile.duplicate_event", key=ref.key, state=progress.state)
            return "duplicate"
        partner = partner_of(ref.key)
        if partner is None:
            return await self._quarantine(ref, "bad_key", "key must start with a partner "
                                          f"code matching {PARTNER.pattern} and a '/'")
        log.info("bankfile.started", key=ref.key, partner=partner, size=ref.size,
                 resume_at=progress.next_index)
        # One thread per file for every parser call: lxml's parser state is bound to
        # the thread that made it (an iterparse resumed on another pool thread can abort).
        with tempfile.TemporaryFile() as spool, ThreadPoolExecutor(1, "bankfile") as thread:
            in_thread = functools.partial(asyncio.get_running_loop().run_in_executor, thread)
            try:
                await self._download(ref, spool)
                spool.seek(0)
                items = await in_thread(functools.partial(
                    read_bank_file, spool, partner=partner, source_key=ref.key,
                    start_index=progress.next_index, max_bytes=self.options.max_bytes))
            except _Skip as skip:
                log.warning("bankfile.skipped", key=ref.key, outcome=skip.outcome)
                return skip.outcome
            except FileRejected as exc:
                return await self._quarantine(ref, exc.reason, exc.detail)
            try:
                total = await self._records(
                    ref, progress.next_index,
                    lambda: in_thread(functools.partial(_take, items, self.options.batch)))
            finally:  # a generator: close it (and its parser) on its own thread
                await in_thread(getattr(items, "close", lambda: None))
        await self.progress.finish(ref, total, "done")
        log.info("bankfile.done", key=ref.key, transactions=total)
        return "processed"

    async def _download(self, ref: ObjectRef, out: IO[bytes]) -> None:
        """Stream the object to ``out`` in 1 MiB chunks, refusing more than ``max_bytes``."""
        limit = self.options.max_bytes
        if ref.size > limit:
            raise FileRejected("too_large", f"object of {ref.size} bytes is over {limit}")
        kwargs: dict[str, Any] = {"IfMatch": ref.etag} if ref.etag else {}
        try:
            resp = await self.s3.get_object(Bucket=ref.bucket, Key=ref.key, **kwargs)
        except Exception as exc:
            code = error_code(exc)
            if code in ("NoSuchKey", "404"):
                raise _Skip("gone") from exc
            if code in ("PreconditionFailed", "412"):
                raise _Skip("superseded") from exc
            raise
        body, read = resp["Body"], 0
        try:
            while chunk := await body.read(1 << 20):
                read += len(chunk)
                if read > limit:
                    raise FileRejected("too_large", f"object is over {limit} bytes")
                out.write(chunk)
        finally:
            body.close()

    async def _records(self, ref: ObjectRef, start: int,
                       take: Callable[[], Awaitable[list[Item]]]) -> int:
        """Write every transaction from ``start`` on; returns the file's transaction count."""
        next_index, saved, handled = start, start, 0
        while batch := await take():
            outcomes = await asyncio.gather(*(self._record(ref, item) for item in batch))
            for outcome in outcomes:
                FILE_RECORDS.labels(queue=self.queue, outcome=outcome).inc()
            handled += len(batch)
            next_index = batch[-1].index + 1
            fault_point("bankfiles.after_transaction", reached=handled)
            reported = {"rejected", "quarantined"} & set(outcomes)
            if reported or next_index - saved >= self.options.checkpoint_every:
                await self.progress.save(ref, next_index)
                saved = next_index
            if self._stop.is_set():
                await self.progress.save(ref, next_index)
                log.info("bankfile.interrupted", key=ref.key, next_index=next_index)
                raise _Interrupted
        return next_index

    async def _record(self, ref: ObjectRef, item: Item) -> str:
        if isinstance(item, TransactionRejected):
            if item.reason == "not_final":
                return "not_final"
            await self._report(item.reason, item.detail, json.dumps(
                {"bucket": ref.bucket, "key": ref.key, "etag": ref.etag, "index": item.index}),
                {"key": ref.key, "index": str(item.index)})
            return "rejected"
        try:
            parsed = to_parsed(item.notification)
            outcome = await store_parsed(self.store, parsed)
        except InvalidMessage as exc:
            await self._report(exc.reason, exc.detail, json.dumps(item.notification),
                               {"key": ref.key, "index": str(item.index)})
            return "rejected"
        if outcome == "conflict":
            await self._report("conflicting_duplicate", conflict_detail(parsed.request_id),
                               parsed.payload, {"key": ref.key, "index": str(item.index),
                                                "request_id": parsed.request_id})
            return "quarantined"
        return outcome

    async def _quarantine(self, ref: ObjectRef, reason: str, detail: str) -> str:
        """Tag the object, report it on the DLQ, and never read this version again."""
        try:
            tags = (await self.s3.get_object_tagging(Bucket=ref.bucket, Key=ref.key))["TagSet"]
            tags = [t for t in tags if t["Key"] != QUARANTINE_TAG]
            await self.s3.put_object_tagging(Bucket=ref.bucket, Key=ref.key, Tagging={
                "TagSet": [*tags, {"Key": QUARANTINE_TAG, "Value": reason}]})
        except Exception as exc:
            if error_code(exc) not in ("NoSuchKey", "404"):
                raise
        await self._report(reason, detail, json.dumps(
            {"bucket": ref.bucket, "key": ref.key, "etag": ref.etag, "reason": reason,
             "detail": detail[:1024]}), {"key": ref.key})
        await self.progress.finish(ref, 0, "quarantined", reason)
        log.warning("bankfile.quarantined", key=ref.key, reason=reason, detail=detail[:300])
        return "quarantined"

    async def _report(self, reason: str, detail: str, body: str, extra: dict[str, str]) -> None:
        attrs: dict[str, Any] = {
            f"remitflow.{name}": {"DataType": "String", "StringValue": value[:1024] or "-"}
            for name, value in {"reason": reason, "detail": detail, "source_queue": self.queue,
                                **extra}.items()}
        await self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=body,
                                    MessageAttributes=attrs)
        DLQ_MESSAGES.labels(queue=self.queue, reason=reason).inc()
        if reason != "conflicting_duplicate" and "index" in extra:
            log.warning("bankfile.transaction_rejected", key=extra.get("key"),
                        index=extra["index"], reason=reason, detail=detail[:300])
