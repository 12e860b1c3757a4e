"""The archive bucket of the data lifecycle (``docs/architecture.md``, "Data lifecycle").

Expired jobs are the financial record: Object Lock in governance mode keeps every
object version for ``REMITFLOW_ARCHIVE_RETENTION_DAYS`` (default seven years), a
lifecycle rule moves objects to Glacier Deep Archive after
``REMITFLOW_ARCHIVE_COLD_AFTER_DAYS`` (0: never), and nothing is public. Bootstrap
creates the same bucket for local runs (``shared/provision/lifecycle.py``).
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from constructs import Construct

from shared.settings import Settings


def private_versioned() -> dict[str, Any]:
    """What every bucket of the stack has: no public access, encrypted, versioned."""
    return {
        "public_access_block_configuration": s3.CfnBucket.PublicAccessBlockConfigurationProperty(
            block_public_acls=True, block_public_policy=True, ignore_public_acls=True,
            restrict_public_buckets=True),
        "bucket_encryption": s3.CfnBucket.BucketEncryptionProperty(
            server_side_encryption_configuration=[
                s3.CfnBucket.ServerSideEncryptionRuleProperty(
                    server_side_encryption_by_default=s3.CfnBucket
                    .ServerSideEncryptionByDefaultProperty(sse_algorithm="AES256"))]),
        "versioning_configuration": s3.CfnBucket.VersioningConfigurationProperty(
            status="Enabled"),
    }


def archive_bucket(scope: Construct, settings: Settings, *, retain: bool) -> s3.CfnBucket:
    name = settings.archive_bucket_name
    rules = ([s3.CfnBucket.RuleProperty(
        id="cold", status="Enabled",
        transitions=[s3.CfnBucket.TransitionProperty(
            storage_class="DEEP_ARCHIVE",
            transition_in_days=settings.lifecycle.archive_cold_after_days)])]
        if settings.lifecycle.archive_cold_after_days else [])
    bucket = s3.CfnBucket(
        scope, "ArchiveBucket", bucket_name=name,
        object_lock_enabled=True,
        object_lock_configuration=s3.CfnBucket.ObjectLockConfigurationProperty(
            object_lock_enabled="Enabled",
            rule=s3.CfnBucket.ObjectLockRuleProperty(
                default_retention=s3.CfnBucket.DefaultRetentionProperty(
                    mode="GOVERNANCE", days=settings.lifecycle.archive_retention_days))),
        lifecycle_configuration=s3.CfnBucket.LifecycleConfigurationProperty(rules=rules)
        if rules else None,
        **private_versioned())
    bucket.apply_removal_policy(cdk.RemovalPolicy.RETAIN if retain
                                else cdk.RemovalPolicy.DESTROY)
    return bucket
