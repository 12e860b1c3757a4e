"""The enrichment service, declared: partner messages and bank files in, advices out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from services.enrichment.kind import ENRICHMENT, PARTNER_FILES
from services.enrichment.settings import EnrichmentSettings
from shared.aws.names import Names
from shared.domain.directory import INVOICES, PAYEES
from shared.files.progress import FILE_RECORDS
from shared.grants import CONSUME, READ_REFERENCE, Grant, GrantScope, Res, table
from shared.pipeline.kind import JobKind
from shared.provision.resources import Resources
from shared.service import Service

if TYPE_CHECKING:
    from shared.runtime import Builder

# The bucket's name is global on AWS: the checked-in policy leaves it to the deployment.
BUCKET_PLACEHOLDER = "${REMITFLOW_PARTNER_FILES_BUCKET}"


def build(kinds: Sequence[JobKind], resources: Resources) -> Builder:
    from services.enrichment.service import build

    return build


def grants(scope: GrantScope) -> list[Grant]:
    n, prefix = scope.names, scope.prefix
    drop = replace(PARTNER_FILES, bucket=BUCKET_PLACEHOLDER if scope.placeholders else None)
    queue = drop.queue_name(prefix)
    kn = ENRICHMENT.names(prefix)
    return [Grant("ReadReferenceData", READ_REFERENCE,
                  (*table(n.name(PAYEES)), *table(n.name(INVOICES)))),
            # the task worker publishes the advice (services/enrichment/handler.py)
            Grant("PublishEnriched", ("sns:Publish",),
                  tuple(Res("topic", t) for t in (kn.topic,) if t)),
            # bank files (services/enrichment/bankfiles/worker.py; docs/bankfiles.md)
            Grant("ConsumePartnerFiles", CONSUME, (Res("queue", queue),)),
            Grant("ReportBadFiles", ("sqs:SendMessage", "sqs:GetQueueUrl"),
                  (Res("queue", Names.dlq(queue)),)),
            Grant("FileRecords", ("dynamodb:GetItem", "dynamodb:UpdateItem"),
                  (Res("table", n.name(FILE_RECORDS.short)),)),
            Grant("ReadAndTagPartnerFiles",
                  ("s3:GetObject", "s3:GetObjectTagging", "s3:PutObjectTagging",
                   "s3:DeleteObjectTagging"),
                  (Res("objects", drop.bucket_name(prefix)),))]


SERVICE = Service(name="enrichment", port=8081, build=build, kinds=(ENRICHMENT,),
                  grants=grants, resources=Resources(drops=(PARTNER_FILES,)),
                  settings=EnrichmentSettings)
