"""The notification service, declared: enriched advices in, payees notified."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from services.notification.kind import NOTIFICATION
from shared.aws.names import Names
from shared.domain.directory import PAYEES
from shared.grants import (
    CONSUME,
    READ_INDEXED_JOBS,
    READ_REFERENCE,
    Grant,
    GrantScope,
    Res,
    table,
)
from shared.pipeline.kind import JobKind
from shared.service import DropsOf, Service

if TYPE_CHECKING:
    from shared.runtime import Builder


def build(kinds: Sequence[JobKind], drops: DropsOf) -> Builder:
    from services.notification.service import build

    return build


def grants(scope: GrantScope) -> list[Grant]:
    n, kind = scope.names, NOTIFICATION
    # Sending through a configuration set needs ses:SendEmail on the set too.
    ses_sets = (Res("configuration_set", n.name(kind.ses_events)),) if kind.ses_events else ()
    return [Grant("ReadReferenceData", READ_REFERENCE, table(n.name(PAYEES))),
            Grant("ReadIndexedJobs", READ_INDEXED_JOBS,
                  (Res("table", kind.names(scope.prefix).table),)),
            # webhook endpoint health (services/notification/endpoints.py)
            Grant("EndpointHealth", ("dynamodb:GetItem", "dynamodb:UpdateItem",
                                     "dynamodb:Scan"),
                  tuple(Res("table", n.name(t.short)) for t in kind.extra_tables)),
            Grant("SendEmail", ("ses:SendEmail", "ses:SendRawEmail"),
                  (Res("identity"), *ses_sets)),
            # SES sending events (services/notification/ses_events.py)
            *([Grant("ConsumeSesEvents", CONSUME,
                     (Res("queue", n.name(kind.ses_events)),)),
               # the worker resolves its dead-letter queue's URL at start
               Grant("DeadLetterSesEvents", ("sqs:SendMessage", "sqs:GetQueueUrl"),
                     (Res("queue", Names.dlq(n.name(kind.ses_events))),))]
              if kind.ses_events else [])]


SERVICE = Service(name="notification", port=8082, build=build, kinds=(NOTIFICATION,),
                  grants=grants)
