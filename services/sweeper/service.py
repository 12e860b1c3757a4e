"""The sweeper (being built: see issue 4)."""

from __future__ import annotations

from shared.aws import AwsClients
from shared.names import Names
from shared.runtime import ServiceParts
from shared.service import aws_readiness
from shared.settings import Settings


async def build(settings: Settings, clients: AwsClients) -> ServiceParts:
    names = Names(settings.prefix)
    return ServiceParts(workers=[], readiness=aws_readiness(clients, names.notifications))
