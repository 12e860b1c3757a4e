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
    # Standard Webhooks' schedule after the immediate first attempt (8 attempts over
    # about 27.6 h); e-mail: SES refusals are mostly throttling, so sooner and shorter.
    retry_schedule="30s,5m,30m,2h",
    schedule_by="channel",
    schedules={"webhook": "5s,5m,30m,2h,5h,10h,10h", "email": "30s,5m,30m,2h"},
    in_doubt_field="delivery_intent",
    operator_output={"delivery_id": "operator"},
)
