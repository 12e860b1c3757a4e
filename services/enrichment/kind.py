"""The enrichment job kind: partner notifications in, enriched advices published."""

from __future__ import annotations

from importlib.resources import files

from shared.pipeline.jobs import Status
from shared.pipeline.kind import JobKind

ENRICHMENT = JobKind(
    name="enrichment",
    table="remittances",
    intake_queue="remittance-events",
    definition=files(__package__).joinpath("workflow.asl.json"),
    success=Status.COMPLETED,
    output_fields={"advice_json": "advice"},
    publishes="remittance-enriched",
)
