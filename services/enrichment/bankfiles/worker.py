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
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import IO, TYPE_CHECKING, Any

from services.enrichment.bankfiles import (
    FileRejected,
    StatusReport,
    Transaction,
    TransactionRejected,
    detect,
    read_bank_file,
)
from services.enrichment.bankfiles.mapping import PARTNER
from services.enrichment.handler import parse_partner_message
from services.enrichment.settings import PartnerFileRules
from shared.aws.clients import error_code
from shared.aws.sqs import SqsWorker
from shared.files.drop import ObjectRef, object_events
from shared.files.progress import FileProgress, FileSummary
from shared.logs import get_logger
from shared.metrics import (
    DLQ_MESSAGES,
    FILE_DURATION,
    FILE_RECORDS,
    FILE_STATUS_REPORTS,
    FILES,
    WORKER_ERRORS,
)
from shared.pipeline.faults import fault_point
from shared.pipeline.intake import InvalidMessage, Parsed, conflict_detail, store_parsed
from shared.pipeline.jobs import JobStore, content_hash
from shared.schedule import Schedule

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
Item = Transaction | TransactionRejected | StatusReport


@dataclass(frozen=True)
class FileOptions:
    max_bytes: int
    checkpoint_every: int
    max_in_flight: int = 2
    wait_s: int = 10
    visibility_s: int = 60
    batch: int = 20
    backoff: Schedule | None = None    # a file that failed for now: hidden for longer each time
    rules: Mapping[str, PartnerFileRules] = field(default_factory=dict)


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
        summary = progress.summary
        partner = partner_of(ref.key)
        if partner is None:
            return await self._quarantine(ref, "bad_key", "key must start with a partner "
                                          f"code matching {PARTNER.pattern} and a '/'", summary)
        summary.info.setdefault("partner", partner)
        summary.info.setdefault("queue", self.queue)
        log.info("bankfile.started", key=ref.key, partner=partner, size=ref.size,
                 resume_at=progress.next_index)
        # One thread per file for every parser call: lxml's parser state is bound to
        # the thread that made it (an iterparse resumed on another pool thread can abort).
        with tempfile.TemporaryFile() as spool, ThreadPoolExecutor(1, "bankfile") as thread:
            in_thread = functools.partial(asyncio.get_running_loop().run_in_executor, thread)
            try:
                await self._download(ref, spool)
                spool.seek(0)
                kind = await in_thread(functools.partial(detect, spool))
                summary.info.update(message_type=kind.name, schema=kind.schema,
                                    variant=kind.variant or "ISO 20022")
                spool.seek(0)
                rules = self.options.rules.get(partner) or PartnerFileRules()
                items = await in_thread(functools.partial(
                    read_bank_file, spool, partner=partner, source_key=ref.key,
                    start_index=progress.next_index, max_bytes=self.options.max_bytes,
                    payee_map=rules.payee_map,
                    invoice_from_end_to_end=rules.invoice_from_end_to_end))
            except _Skip as skip:
                log.warning("bankfile.skipped", key=ref.key, outcome=skip.outcome)
                return skip.outcome
            except FileRejected as exc:
                return await self._quarantine(ref, exc.reason, exc.detail, summary)
            try:
                total = await self._records(
                    ref, progress.next_index,
                    lambda: in_thread(functools.partial(_take, items, self.options.batch)),
                    summary)
            finally:  # a generator: close it (and its parser) on its own thread
                await in_thread(getattr(items, "close", lambda: None))
        if "retried_at" in summary.info:  # read after an operator's retry: no longer quarantined
            await self._untag(ref)
        await self.progress.finish(ref, total, "done", summary=summary)
        log.info("bankfile.done", key=ref.key, records=total, **summary.counts)
        return "processed"

    async def _download(self, ref: ObjectRef, out: IO[bytes]) -> None:
        """Stream the object to ``out`` in 1 MiB chunks, refusing more than ``max_bytes``:
        by the event's size (else ``HeadObject``'s) before downloading, and again while
        streaming. ``out`` is the file's only copy: the reader reads it in place."""
        limit = self.options.max_bytes
        kwargs: dict[str, Any] = {"IfMatch": ref.etag} if ref.etag else {}
        size = ref.size
        try:
            if not size:  # an event without a size (an operator's retry): ask S3 first
                head = await self.s3.head_object(Bucket=ref.bucket, Key=ref.key)
                if ref.etag and head["ETag"].strip('"') != ref.etag:
                    raise _Skip("superseded")  # (moto's HeadObject If-Match wants quotes)
                size = head["ContentLength"]
            if size > limit:  # refused before a byte is downloaded
                raise FileRejected("too_large", f"object of {size} bytes is over {limit} "
                                   "(REMITFLOW_PARTNER_FILES_MAX_BYTES, the scratch space "
                                   "a file may use)")
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
                       take: Callable[[], Awaitable[list[Item]]], summary: FileSummary) -> int:
        """Write every record from ``start`` on; returns the file's record count."""
        next_index, saved, handled = start, start, 0
        while batch := await take():
            outcomes = await asyncio.gather(*(self._record(ref, item) for item in batch))
            for item, outcome in zip(batch, outcomes, strict=True):
                FILE_RECORDS.labels(queue=self.queue, outcome=outcome).inc()
                summary.count(outcome)
                if isinstance(item, StatusReport):
                    summary.note({"index": item.index, "level": item.level,
                                  "status": item.status, "reason": item.reason_code or "",
                                  "detail": item.reason_text or "",
                                  "reference": item.reference or "",
                                  "transactions": item.transactions})
                elif isinstance(item, TransactionRejected) and outcome == "rejected":
                    summary.note({"index": item.index, "reason": item.reason,
                                  "detail": item.detail[:200]})
            handled += len(batch)
            next_index = batch[-1].index + 1
            fault_point("bankfiles.after_transaction", reached=handled)
            reported = {"rejected", "quarantined", "reported"} & set(outcomes)
            if reported or next_index - saved >= self.options.checkpoint_every:
                await self.progress.save(ref, next_index, summary)
                saved = next_index
            if self._stop.is_set():
                await self.progress.save(ref, next_index, summary)
                log.info("bankfile.interrupted", key=ref.key, next_index=next_index)
                raise _Interrupted
        return next_index

    async def _status_report(self, ref: ObjectRef, item: StatusReport) -> str:
        """A group/batch status without transactions: metric, log line, and (when the
        bank rejected it) a DLQ report; the caller notes it on the file's record."""
        FILE_STATUS_REPORTS.labels(queue=self.queue, level=item.level, status=item.status).inc()
        fields = {"key": ref.key, "index": item.index, "level": item.level,
                  "status": item.status, "reason": item.reason_code,
                  "reason_text": item.reason_text, "reference": item.reference,
                  "transactions": item.transactions}
        if not item.rejected:
            log.info("bankfile.status_report", **fields)
            return "reported"
        log.warning("bankfile.status_report", **fields)
        detail = (f"the bank rejected {'payment batch' if item.level == 'payment' else 'group'} "
                  f"{item.reference or '?'}" + (f" ({item.transactions} transactions)"
                                                 if item.transactions else "")
                  + (f": {item.reason_code} {item.reason_text or ''}".rstrip()
                     if item.reason_code else ""))
        await self._report(f"{item.level}_rejected", detail, json.dumps(
            {"bucket": ref.bucket, "key": ref.key, "etag": ref.etag, "index": item.index,
             "level": item.level, "status": item.status, "reference": item.reference}),
            {"key": ref.key, "index": str(item.index)})
        return "reported"

    async def _record(self, ref: ObjectRef, item: Item) -> str:
        if isinstance(item, StatusReport):
            return await self._status_report(ref, item)
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

    async def _untag(self, ref: ObjectRef) -> None:
        tags = (await self.s3.get_object_tagging(Bucket=ref.bucket, Key=ref.key))["TagSet"]
        kept = [t for t in tags if t["Key"] != QUARANTINE_TAG]
        if kept == tags:
            return
        if kept:
            await self.s3.put_object_tagging(Bucket=ref.bucket, Key=ref.key,
                                             Tagging={"TagSet": kept})
        else:  # moto answers an empty TagSet with a 500; S3 has a call for this
            await self.s3.delete_object_tagging(Bucket=ref.bucket, Key=ref.key)

    async def _quarantine(self, ref: ObjectRef, reason: str, detail: str,
                          summary: FileSummary) -> str:
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
        summary.info["detail"] = detail[:1024]
        summary.info.setdefault("queue", self.queue)
        await self.progress.finish(ref, 0, "quarantined", reason, summary)
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
        if reason not in ("conflicting_duplicate", "payment_rejected", "group_rejected") \
                and "index" in extra:
            log.warning("bankfile.transaction_rejected", key=extra.get("key"),
                        index=extra["index"], reason=reason, detail=detail[:300])
