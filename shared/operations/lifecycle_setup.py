"""Provisioning of the data lifecycle: TTL on the job tables, the tombstone table and
the archive bucket (``docs/architecture.md``, "Data lifecycle").

Kept apart from ``shared/pipeline/bootstrap.py`` on purpose (provisioning moves to a
package of its own): bootstrap's caller runs :func:`ensure_lifecycle` after it.
Idempotent, like bootstrap: what exists is left as it is. The archive bucket's
retention (Object Lock, lifecycle to a colder class) is the CDK stack's on AWS
(``deploy/cdk``); here the bucket is created with Object Lock on and the same
default retention, so the emulator refuses what AWS would refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shared.aws.clients import AwsClients, error_code
from shared.aws.names import Names
from shared.logs import get_logger
from shared.operations.sealing import SUBJECT_ID, SUBJECT_KEYS
from shared.pipeline.kind import JobKind
from shared.pipeline.lifecycle import EXPIRES_AT, TOMBSTONE_KEY, TOMBSTONES
from shared.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

log = get_logger(__name__)


async def enable_ttl(ddb: DynamoDBClient, table: str, attribute: str = EXPIRES_AT) -> None:
    """DynamoDB expires ``table``'s items by ``attribute`` (idempotent)."""
    desc = (await ddb.describe_time_to_live(TableName=table))["TimeToLiveDescription"]
    if desc.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") \
            and desc.get("AttributeName") == attribute:
        return
    await ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": attribute})
    log.info("bootstrap.updated", kind="table", name=table, change=f"ttl {attribute}")


async def _ensure_table(ddb: DynamoDBClient, name: str, key: str) -> None:
    try:
        await ddb.describe_table(TableName=name)
    except Exception as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        await ddb.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}])
        await ddb.get_waiter("table_exists").wait(TableName=name,
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        log.info("bootstrap.created", kind="table", name=name)


async def ensure_archive_bucket(settings: Settings, clients: AwsClients) -> str:
    """The archive bucket, Object Lock on (governance, the configured retention)."""
    bucket, s3 = settings.archive_bucket_name, clients.s3
    try:
        await s3.head_bucket(Bucket=bucket)
        return bucket
    except Exception as exc:
        if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket, "ObjectLockEnabledForBucket": True}
    if settings.aws_region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.aws_region}
    await s3.create_bucket(**kwargs)
    await s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {
            "Mode": "GOVERNANCE", "Days": settings.archive_retention_days}}})
    log.info("bootstrap.created", kind="bucket", name=bucket)
    return bucket


async def ensure_lifecycle(settings: Settings, clients: AwsClients,
                           kinds: Sequence[JobKind]) -> None:
    """TTL on every job table, the tombstone table (TTL too), the subject keys
    (``shared/operations/sealing.py``) and the archive bucket."""
    ddb = clients.dynamodb
    for kind in kinds:
        await enable_ttl(ddb, kind.names(settings.prefix).table)
    names = Names(settings.prefix)
    await _ensure_table(ddb, names.name(TOMBSTONES), TOMBSTONE_KEY)
    await enable_ttl(ddb, names.name(TOMBSTONES))
    await _ensure_table(ddb, names.name(SUBJECT_KEYS), SUBJECT_ID)
    await ensure_archive_bucket(settings, clients)
