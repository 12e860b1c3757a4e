"""The notification service's SES sending setup comes from its declaration
(``services/notification/resources.py``, ``Resources.owned``), not from the pattern:
bootstrap creates it, the sweeper's dead-letter API covers its queue, and running
bootstrap again neither duplicates it nor verifies the sender again (on AWS each
``VerifyEmailIdentity`` mails the address anew)."""

from __future__ import annotations

from services.notification.declaration import SERVICE
from services.notification.resources import SES_SENDING
from shared.aws.names import Names
from shared.metrics import AWS_REQUESTS
from tests.helpers import Env
from tools.stack import bootstrap_stack, resources_of


def calls(operation: str) -> float:
    return float(AWS_REQUESTS.labels(service="ses", operation=operation)._value.get())


async def test_bootstrap_again_leaves_the_ses_setup_as_it_was(env: Env) -> None:
    name = SES_SENDING.name(env.settings.prefix)
    verified = calls("VerifyEmailIdentity")
    out = await bootstrap_stack(env.settings, env.clients)
    assert calls("VerifyEmailIdentity") == verified, "a known sender was verified again"
    assert out[name] == await env.queue_url(name)
    identities = (await env.clients.ses.list_identities())["Identities"]
    assert env.settings.sender_email in identities
    config = await env.clients.ses.describe_configuration_set(
        ConfigurationSetName=name, ConfigurationSetAttributeNames=["eventDestinations"])
    destinations = config["EventDestinations"]
    assert [d["Name"] for d in destinations] == [f"{name}-sns"]
    topic = destinations[0]["SNSDestination"]["TopicARN"]
    subs = (await env.clients.sns.list_subscriptions_by_topic(TopicArn=topic))["Subscriptions"]
    assert [s["Endpoint"].rsplit(":", 1)[-1] for s in subs] == [name]
    await env.queue_url(Names.dlq(name))


def test_the_ses_queue_is_the_notification_services_and_a_dead_letter_source() -> None:
    assert SES_SENDING in SERVICE.resources.owned
    sources = resources_of().queues("p")
    assert "p-ses-events" in sources and "p-partner-files" in sources
