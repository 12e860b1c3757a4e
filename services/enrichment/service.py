"""The enrichment service: partner notifications in, enriched remittance advices out."""

from __future__ import annotations

import functools

from services.enrichment.handler import handle_task, parse_partner_message
from services.enrichment.kind import ENRICHMENT
from shared.aws.clients import AwsClients
from shared.domain.directory import PayeeDirectory
from shared.pipeline.assemble import aws_readiness, pipeline, state_machine_arn, status_router
from shared.runtime import ServiceParts
from shared.settings import Settings


def topic_arn(state_machine_arn: str, topic: str) -> str:
    """The topic's ARN in the state machine's partition, region and account (no call)."""
    _, partition, _, region, account, *_ = state_machine_arn.split(":")
    return f"arn:{partition}:sns:{region}:{account}:{topic}"


async def build(settings: Settings, clients: AwsClients) -> ServiceParts:
    directory = PayeeDirectory.for_prefix(clients.dynamodb, settings.prefix)
    kn = ENRICHMENT.names(settings.prefix)
    assert kn.topic is not None
    topic = topic_arn(await state_machine_arn(clients, kn.state_machine), kn.topic)

    async def publish(advice_json: str, attributes: dict[str, str]) -> None:
        await clients.sns.publish(TopicArn=topic, Message=advice_json, MessageAttributes={
            k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()})

    handler = functools.partial(handle_task, directory=directory, publish=publish,
                                extra_fields=settings.advice_extras_allowed)

    parse = functools.partial(parse_partner_message, extra_fields=settings.advice_extras_allowed)
    workers, store = await pipeline(settings, clients, ENRICHMENT, parse=parse, handler=handler)
    return ServiceParts(workers=workers, routers=[status_router(ENRICHMENT.table, store)],
                        readiness=aws_readiness(clients, store.table))
