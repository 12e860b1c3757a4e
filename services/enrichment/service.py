"""The enrichment service: partner notifications in, enriched remittance advices out."""

from __future__ import annotations

import functools

from services.enrichment.handler import handle_task, parse_partner_message
from services.enrichment.kind import ENRICHMENT
from shared.aws.clients import AwsClients
from shared.domain.directory import PayeeDirectory
from shared.pipeline.assemble import aws_readiness, pipeline, status_router
from shared.runtime import ServiceParts
from shared.settings import Settings


async def build(settings: Settings, clients: AwsClients) -> ServiceParts:
    directory = PayeeDirectory.for_prefix(clients.dynamodb, settings.prefix)
    handler = functools.partial(handle_task, directory=directory,
                                extra_fields=settings.advice_extras_allowed)

    parse = functools.partial(parse_partner_message, extra_fields=settings.advice_extras_allowed)
    workers, store = await pipeline(settings, clients, ENRICHMENT, parse=parse, handler=handler)
    return ServiceParts(workers=workers, routers=[status_router(ENRICHMENT.table, store)],
                        readiness=aws_readiness(clients, store.table))
