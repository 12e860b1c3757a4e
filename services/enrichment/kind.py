"""The enrichment job kind: partner notifications in, enriched advices published."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.resources import files

from services.enrichment.models import PartnerNotification
from shared.domain.advice import RemittanceAdvice
from shared.files.drop import FileDrop
from shared.pipeline.jobs import Status
from shared.pipeline.kind import HandOff, JobKind
from shared.settings import Settings


def advice_attributes(advice_json: str) -> Mapping[str, str]:
    """The message attributes an advice is published with (SNS filter policies)."""
    return RemittanceAdvice.model_validate_json(advice_json).message_attributes()


def task_payload(payload: str, settings: Settings) -> str | None:
    """What the enrichment task needs of a stored partner message, for the execution
    input: the message's own fields and only the extra fields the advice may carry
    (``REMITFLOW_ADVICE_EXTRA_FIELDS``); the others stay on the stored payload alone,
    not in Step Functions' execution history."""
    try:
        message = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    keep = PartnerNotification.model_fields.keys() | settings.advice_extras_allowed
    return json.dumps({k: v for k, v in message.items() if k in keep},
                      ensure_ascii=False, separators=(",", ":"))


ENRICHMENT = JobKind(
    name="enrichment",
    table="remittances",
    intake_queue="remittance-events",
    definition=files(__package__).joinpath("workflow.asl.json"),
    success=Status.COMPLETED,
    output_fields={"advice_json": "advice"},
    publishes="remittance-enriched",
    # The published advice stays on the job: the sweeper's hand-off check can send it
    # again if the notification side never got it.
    handoff=HandOff(field="advice", attributes=advice_attributes),
    # A missing payee or invoice is usually reference data arriving late: an hour
    # and a half of tries, then FAILED for a human.
    retry_schedule="30s,2m,10m,30m,1h",
    # the handler needs only the payload: the task worker reads no item when it is small
    inline_payload=task_payload,
)


PARTNER_FILES = FileDrop(queue="partner-files", bucket_setting="partner_files_bucket")
"""Where banks drop ISO 20022 files: bucket + ``<prefix>-partner-files`` queue; the
bucket's name is ``REMITFLOW_PARTNER_FILES_BUCKET`` when set (global names on AWS)."""
