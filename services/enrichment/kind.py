"""The enrichment job kind: partner notifications in, enriched advices published."""

from __future__ import annotations

from importlib.resources import files

from shared.pipeline.filedrop import FileDrop
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
)


def partner_files(settings: Settings) -> FileDrop:
    """Where banks drop ISO 20022 files: bucket + ``<prefix>-partner-files`` queue."""
    return FileDrop(queue="partner-files", bucket=settings.partner_files_bucket)
