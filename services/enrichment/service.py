"""The enrichment service: partner notifications in, enriched remittance advices out."""

from __future__ import annotations

import functools

from services.enrichment.directory import PayeeDirectory
from services.enrichment.handler import handle_task, parse_partner_message
from shared.aws import AwsClients
from shared.names import Names
from shared.runtime import ServiceParts
from shared.service import aws_readiness, pipeline, status_router
from shared.settings import Settings


async def build(settings: Settings, clients: AwsClients) -> ServiceParts:
    names = Names(settings.prefix)
    directory = PayeeDirectory(clients.dynamodb, names.payees, names.invoices)
    handler = functools.partial(handle_task, directory=directory)

    workers, store = await pipeline(
        settings, clients, intake_queue=names.remittance_events,
        task_queue=names.enrichment_tasks, table=names.remittances,
        state_machine=names.enrichment_sm, parse=parse_partner_message, handler=handler)
    return ServiceParts(workers=workers, routers=[status_router("remittances", store)],
                        readiness=aws_readiness(clients, names.remittances))
