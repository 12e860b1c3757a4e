"""What the notification service owns beyond its job kind: its SES sending setup.

The sender identity, and the configuration set whose sending events (``Send``,
``Reject``, …) reach ``<prefix>-ses-events`` through a topic of the same name into a
queue with a DLQ, where :mod:`services.notification.ses_events` settles unknown
e-mail outcomes (``docs/architecture.md``, "SES events"). Declared on the service
(``declaration.py``), created by ``remitflow bootstrap`` (``shared/provision``) and
the CDK stack; the mechanism knows nothing of SES.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.notification.settings import NotificationSettings
from shared.aws.clients import error_code
from shared.logs import get_logger
from shared.pipeline.kind import TableSpec
from shared.provision.resources import Provisioner
from shared.settings import narrow

log = get_logger(__name__)

SES_EVENT_TYPES = ("send", "reject", "renderingFailure", "delivery", "bounce", "complaint",
                   "deliveryDelay")
# An identity SES already knows: verifying it again would mail the address again on AWS.
KNOWN_IDENTITY = ("Success", "Pending")


@dataclass(frozen=True)
class SesSending:
    """The sender identity (``REMITFLOW_SENDER_EMAIL``) and the configuration set
    ``<prefix>-<events>`` → topic ``<prefix>-<events>`` → queue ``<prefix>-<events>``
    (+ DLQ) that carries the sending events of the e-mails that name the set."""

    events: str = "ses-events"
    event_types: tuple[str, ...] = SES_EVENT_TYPES

    def name(self, prefix: str) -> str:
        """The configuration set's, topic's and queue's name."""
        return f"{prefix}-{self.events}"

    def queues(self, prefix: str) -> list[str]:
        return [self.name(prefix)]

    async def ensure(self, ctx: Provisioner) -> Mapping[str, str]:
        """Identity, queue, topic (SES may publish), subscription, set, destination."""
        name = self.name(ctx.settings.prefix)
        url, _ = await ctx.event_queue(name)
        sns, ses = ctx.clients.sns, ctx.clients.ses
        topic_arn = (await sns.create_topic(Name=name))["TopicArn"]
        account = topic_arn.split(":")[4]
        policy = {"Version": "2012-10-17", "Statement": [{
            "Sid": "ses-events", "Effect": "Allow",
            "Principal": {"Service": "ses.amazonaws.com"},
            "Action": "sns:Publish", "Resource": topic_arn,
            "Condition": {"StringEquals": {"AWS:SourceAccount": account}}}]}
        await sns.set_topic_attributes(TopicArn=topic_arn, AttributeName="Policy",
                                       AttributeValue=json.dumps(policy))
        await ctx.subscribe(topic_arn, url)
        try:
            await ses.create_configuration_set(ConfigurationSet={"Name": name})
            log.info("bootstrap.created", kind="configuration_set", name=name)
        except Exception as exc:
            if "AlreadyExists" not in error_code(exc):
                raise
        current = await ses.describe_configuration_set(
            ConfigurationSetName=name, ConfigurationSetAttributeNames=["eventDestinations"])
        if not [d for d in current.get("EventDestinations") or [] if d]:
            destination: Any = {"Name": f"{name}-sns", "Enabled": True,
                                 "MatchingEventTypes": list(self.event_types),
                                 "SNSDestination": {"TopicARN": topic_arn}}
            await ses.create_configuration_set_event_destination(
                ConfigurationSetName=name, EventDestination=destination)
            log.info("bootstrap.created", kind="event_destination", name=f"{name}-sns")
        sender = narrow(ctx.settings, NotificationSettings).sender_email
        known = (await ses.get_identity_verification_attributes(Identities=[sender]))
        attributes = known["VerificationAttributes"].get(sender)
        status = attributes.get("VerificationStatus") if attributes else None
        if status not in KNOWN_IDENTITY:
            await ses.verify_email_identity(EmailAddress=sender)
            log.info("bootstrap.created", kind="email_identity", name=sender)
        return {name: url}


SES_SENDING = SesSending()
"""SES sending events (``ses_events.py``) settle unknown e-mail outcomes."""

ENDPOINTS = TableSpec("endpoints", "endpoint_id")
"""Webhook endpoint health (``endpoints.py``): one small item per receiver origin, in
its own table so it never meets the job stream or indexes."""
