"""Provisioning of the data lifecycle: TTL on the job tables, the tombstone table and
the archive bucket (``docs/architecture.md``, "Data lifecycle").

Bootstrap (``shared/provision/bootstrap.py``) runs :func:`ensure_lifecycle` after the
job tables exist, with the same primitives. Idempotent, like bootstrap: what exists is
left as it is. The archive bucket's retention (Object Lock, lifecycle to a colder
class) is the CDK stack's on AWS (``deploy/cdk``); here the bucket is created with
Object Lock on and the same default retention, so the emulator refuses what AWS would refuse.
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
from shared.provision.primitives import ensure_table, ensure_ttl
from shared.settings import Settings

if TYPE_CHECKING:
    pass

log = get_logger(__name__)


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
            "Mode": "GOVERNANCE", "Days": settings.lifecycle.archive_retention_days}}})
    log.info("bootstrap.created", kind="bucket", name=bucket)
    return bucket


async def ensure_lifecycle(settings: Settings, clients: AwsClients,
                           kinds: Sequence[JobKind]) -> None:
    """TTL on every job table, the tombstone table (TTL too), the subject keys
    (``shared/operations/sealing.py``) and the archive bucket."""
    ddb = clients.dynamodb
    for kind in kinds:
        await ensure_ttl(ddb, kind.names(settings.prefix).table, EXPIRES_AT)
    names = Names(settings.prefix)
    await ensure_table(ddb, names.name(TOMBSTONES), TOMBSTONE_KEY, job=False)
    await ensure_ttl(ddb, names.name(TOMBSTONES), EXPIRES_AT)
    await ensure_table(ddb, names.name(SUBJECT_KEYS), SUBJECT_ID, job=False)
    await ensure_archive_bucket(settings, clients)
