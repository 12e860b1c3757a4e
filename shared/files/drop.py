"""File drops: a bucket whose new objects are announced on an SQS queue.

The mechanism half of file intake: the resource spec bootstrap creates (bucket,
``ObjectCreated`` event notification, queue with a DLQ, the queue policy that lets
S3 send) and the parser of the S3 event messages the queue receives. What a file
*means* is the business of whoever consumes the queue (``docs/bankfiles.md``).

S3 event notifications are at-least-once and may be duplicated or reordered; an
object overwritten under the same key announces itself again with a new ETag.
Consumers key their progress on bucket, key and ETag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote_plus, unquote_plus

from shared.aws.clients import AwsClients, error_code
from shared.logs import get_logger
from shared.pipeline.intake import InvalidMessage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = get_logger(__name__)


@dataclass(frozen=True)
class FileDrop:
    """A bucket + queue pair, independent of any job kind.

    Attributes:
        queue: short queue name (``<prefix>-<queue>``, DLQ ``<prefix>-<queue>-dlq``).
        bucket: full bucket name; default ``<prefix>-<queue>`` in lower case
            (bucket names are global on AWS: set it there).
    """

    queue: str
    bucket: str | None = None

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


async def ensure_file_drop(
        clients: AwsClients, drop: FileDrop, prefix: str,
        ensure_queue: Callable[[str], Awaitable[tuple[str, str]]]) -> dict[str, str]:
    """Bucket, queue (+DLQ via ``ensure_queue``), queue policy and event notification.

    Idempotent: the bucket is created only when missing, the policy and the
    notification configuration are set to the same value each time (S3 replaces
    the whole configuration; this drop owns it). Returns ``{queue: url, bucket: arn}``.
    """
    bucket, queue = drop.bucket_name(prefix), drop.queue_name(prefix)
    s3 = clients.s3
    try:
        await s3.head_bucket(Bucket=bucket)
    except Exception as exc:
        if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        kwargs: dict[str, object] = {"Bucket": bucket}
        region = clients.settings.aws_region
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        await s3.create_bucket(**kwargs)  # type: ignore[arg-type]
        log.info("bootstrap.created", kind="bucket", name=bucket)
    url, queue_arn = await ensure_queue(queue)
    bucket_arn = f"arn:aws:s3:::{bucket}"
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "bucket-to-queue", "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": bucket_arn}}}]}
    await clients.sqs.set_queue_attributes(QueueUrl=url,
                                           Attributes={"Policy": json.dumps(policy)})
    wanted = [{"Id": f"{queue}-created", "QueueArn": queue_arn,
               "Events": ["s3:ObjectCreated:*"]}]
    current = await s3.get_bucket_notification_configuration(Bucket=bucket)
    if [(c.get("QueueArn"), c.get("Events")) for c in current.get("QueueConfigurations", [])] \
            != [(w["QueueArn"], w["Events"]) for w in wanted]:
        await s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": wanted})  # type: ignore[typeddict-item]
        log.info("bootstrap.updated", kind="bucket_notification", name=bucket, queue=queue)
    return {queue: url, bucket: bucket_arn}
