"""File drops: a bucket whose new objects are announced on an SQS queue.

The mechanism half of file intake: the resource spec a service declares (bucket,
``ObjectCreated`` event notification, queue with a DLQ, the queue policy that lets
S3 send: created by ``shared/provision``) and the parser of the S3 event messages
the queue receives. What a file
*means* is the business of whoever consumes the queue (``docs/bankfiles.md``).

S3 event notifications are at-least-once and may be duplicated or reordered; an
object overwritten under the same key announces itself again with a new ETag.
Consumers key their progress on bucket, key and ETag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from urllib.parse import quote_plus, unquote_plus

from shared.pipeline.intake import InvalidMessage


@dataclass(frozen=True)
class FileDrop:
    """A bucket + queue pair, independent of any job kind: static data a service
    declares (:class:`shared.provision.resources.Resources`).

    Attributes:
        queue: short queue name (``<prefix>-<queue>``, DLQ ``<prefix>-<queue>-dlq``).
        bucket: full bucket name; default ``<prefix>-<queue>`` in lower case
            (bucket names are global on AWS: set it there).
        bucket_setting: the settings attribute that, when set, names the bucket
            (``partner_files_bucket``: ``REMITFLOW_PARTNER_FILES_BUCKET``); see
            :meth:`resolved`.
    """

    queue: str
    bucket: str | None = None
    bucket_setting: str | None = None

    def resolved(self, settings: object) -> FileDrop:
        """This drop with the bucket its setting names, if that setting is set (the
        queue's name never depends on settings, only on the prefix)."""
        configured = getattr(settings, self.bucket_setting, None) if self.bucket_setting \
            else None
        return replace(self, bucket=configured) if configured else self

    def queue_name(self, prefix: str) -> str:
        return f"{prefix}-{self.queue}"

    def bucket_name(self, prefix: str) -> str:
        return self.bucket or f"{prefix}-{self.queue}".lower()


@dataclass(frozen=True)
class ObjectRef:
    """One created object, as an S3 event names it (key already URL-decoded)."""

    bucket: str
    key: str
    etag: str
    size: int


def object_events(body: str) -> list[ObjectRef]:
    """The created objects an S3 event message announces.

    ``s3:TestEvent`` (sent by S3 when the notification is configured) and
    records that are not ``ObjectCreated`` give ``[]``.

    Raises:
        InvalidMessage: the body is not an S3 event notification.
    """
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise InvalidMessage("not_s3_event", f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidMessage("not_s3_event", "body is not a JSON object")
    if data.get("Event") == "s3:TestEvent":
        return []
    records = data.get("Records")
    if not isinstance(records, list):
        raise InvalidMessage("not_s3_event", "no Records list")
    out: list[ObjectRef] = []
    for record in records:
        try:
            if record.get("eventSource") != "aws:s3" or not str(
                    record.get("eventName", "")).startswith("ObjectCreated"):
                continue
            obj = record["s3"]["object"]
            out.append(ObjectRef(bucket=str(record["s3"]["bucket"]["name"]),
                                 key=unquote_plus(str(obj["key"])),
                                 etag=str(obj.get("eTag") or obj.get("etag") or "").strip('"'),
                                 size=int(obj.get("size") or 0)))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidMessage("not_s3_event", f"malformed S3 record: {exc!r}") from exc
    return out


def created_event(ref: ObjectRef) -> str:
    """An ``ObjectCreated`` event for ``ref`` as S3 would send it (what
    :func:`object_events` reads): an operator's retry of a file version goes
    through the same path as the original event."""
    return json.dumps({"Records": [{
        "eventSource": "aws:s3", "eventName": "ObjectCreated:Retry",
        "s3": {"bucket": {"name": ref.bucket},
               "object": {"key": quote_plus(ref.key), "eTag": ref.etag, "size": ref.size}}}]})
