"""The enrichment job kind: partner notifications in, enriched advices published."""

from __future__ import annotations

from importlib.resources import files

from shared.files.drop import FileDrop
from shared.pipeline.jobs import Status
from shared.pipeline.kind import JobKind
from shared.settings import Settings

ENRICHMENT = JobKind(
    name="enrichment",
    table="remittances",
    intake_queue="remittance-events",
    definition=files(__package__).joinpath("workflow.asl.json"),
    success=Status.COMPLETED,
    output_fields={"advice_json": "advice"},
    publishes="remittance-enriched",
    # A missing payee or invoice is usually reference data arriving late: an hour
    # and a half of tries, then FAILED for a human.
    retry_schedule="30s,2m,10m,30m,1h",
    # the handler needs only the payload: the task worker reads no item when it is small
    inline_payload=True,
)


PARTNER_FILES = FileDrop(queue="partner-files")
"""Where banks drop ISO 20022 files: bucket + ``<prefix>-partner-files`` queue."""


def partner_files(settings: Settings) -> FileDrop:
    """:data:`PARTNER_FILES` with the bucket name from settings (global names on AWS)."""
    return FileDrop(queue=PARTNER_FILES.queue, bucket=settings.partner_files_bucket)
