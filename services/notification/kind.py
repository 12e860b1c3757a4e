"""The notification job kind: enriched advices in (from the topic), payees notified."""

from __future__ import annotations

from importlib.resources import files

from shared.pipeline.jobs import Status
from shared.pipeline.kind import JobKind

NOTIFICATION = JobKind(
    name="notification",
    table="notifications",
    intake_queue="notification-events",
    definition=files(__package__).joinpath("workflow.asl.json"),
    success=Status.SENT,
    output_fields={"delivery_id": "delivery_id"},
    subscribes="remittance-enriched",
)
