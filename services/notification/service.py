"""The notification service: enriched advices in, payees notified (e-mail or webhook)."""

from __future__ import annotations

from pathlib import Path

from services.notification.handler import Notifier, parse_advice
from services.notification.kind import NOTIFICATION
from services.notification.pools import HostPools
from services.notification.render import Renderer
from services.notification.rules import RuleSet
from shared.aws.clients import AwsClients
from shared.domain.directory import PayeeDirectory
from shared.pipeline.assemble import aws_readiness, job_store, pipeline, status_router
from shared.runtime import ServiceParts
from shared.settings import Settings

HERE = Path(__file__).parent
RULES = HERE / "rules.yaml"
TEMPLATES = HERE / "templates"


async def build(settings: Settings, clients: AwsClients) -> ServiceParts:
    # Rules and templates are parsed here, at start-up: a broken file stops the
    # service before it takes work, never at the first payee.
    rules = RuleSet.load(RULES)
    renderer = Renderer.load(TEMPLATES, rules)
    http = HostPools(timeout_s=settings.webhook_timeout_s)
    notifier = Notifier(
        store=job_store(settings, clients, NOTIFICATION), rules=rules, renderer=renderer,
        ses=clients.ses, http=http,
        directory=PayeeDirectory.for_prefix(clients.dynamodb, settings.prefix),
        sender=settings.sender_email, webhook_timeout_s=settings.webhook_timeout_s,
        allow_private=settings.webhook_allow_private,
        unknown_outcome=settings.email_unknown_outcome,
        resend_after_s=settings.email_resend_after_s)

    workers, store = await pipeline(settings, clients, NOTIFICATION, parse=parse_advice,
                                    handler=notifier.handle)
    return ServiceParts(workers=workers, routers=[status_router(NOTIFICATION.table, store)],
                        readiness=aws_readiness(clients, store.table), closers=[http.aclose])
