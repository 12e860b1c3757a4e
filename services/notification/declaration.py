"""The notification service, declared: enriched advices in, payees notified."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from services.notification.kind import NOTIFICATION
from services.notification.resources import ENDPOINTS, SES_SENDING
from services.notification.settings import NotificationSettings
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
from shared.provision.resources import Resources
from shared.service import Service

if TYPE_CHECKING:
    from shared.runtime import Builder


def build(kinds: Sequence[JobKind], resources: Resources) -> Builder:
    from services.notification.service import build

    return build


def grants(scope: GrantScope) -> list[Grant]:
    n = scope.names
    # Sending through a configuration set needs ses:SendEmail on the set too.
    ses_events = SES_SENDING.name(scope.prefix)
    return [Grant("ReadReferenceData", READ_REFERENCE, table(n.name(PAYEES))),
            Grant("ReadIndexedJobs", READ_INDEXED_JOBS,
                  (Res("table", NOTIFICATION.names(scope.prefix).table),)),
            # webhook endpoint health (services/notification/endpoints.py)
            Grant("EndpointHealth", ("dynamodb:GetItem", "dynamodb:UpdateItem",
                                     "dynamodb:Scan"),
                  (Res("table", n.name(ENDPOINTS.short)),)),
            Grant("SendEmail", ("ses:SendEmail", "ses:SendRawEmail"),
                  (Res("identity"), Res("configuration_set", ses_events))),
            # SES sending events (services/notification/ses_events.py)
            Grant("ConsumeSesEvents", CONSUME, (Res("queue", ses_events),)),
            # the worker resolves its dead-letter queue's URL at start
            Grant("DeadLetterSesEvents", ("sqs:SendMessage", "sqs:GetQueueUrl"),
                  (Res("queue", Names.dlq(ses_events)),))]


SERVICE = Service(name="notification", port=8082, build=build, kinds=(NOTIFICATION,),
                  grants=grants,
                  resources=Resources(tables=(ENDPOINTS,), owned=(SES_SENDING,)),
                  settings=NotificationSettings)
