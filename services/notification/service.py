"""The notification service: enriched advices in, payees notified (e-mail or webhook)."""

from __future__ import annotations

from pathlib import Path

import httpx

from services.enrichment.directory import PayeeDirectory
from services.notification.handler import Notifier, parse_advice
from services.notification.render import Renderer
from services.notification.rules import RuleSet
from shared.aws import AwsClients
from shared.names import Names
from shared.runtime import ServiceParts
from shared.service import aws_readiness, job_store, pipeline, status_router
from shared.settings import Settings

HERE = Path(__file__).parent
RULES = HERE / "rules.yaml"
TEMPLATES = HERE / "templates"


async def build(settings: Settings, clients: AwsClients) -> ServiceParts:
    names = Names(settings.prefix)
    # Rules and templates are parsed here, at start-up: a broken file stops the
    # service before it takes work, never at the first payee.
    rules = RuleSet.load(RULES)
    renderer = Renderer.load(TEMPLATES, rules)
    http = httpx.AsyncClient(follow_redirects=False, timeout=settings.webhook_timeout_s)
    notifier = Notifier(
        store=job_store(settings, clients, names.notifications), rules=rules, renderer=renderer,
        ses=clients.ses, http=http,
        directory=PayeeDirectory(clients.dynamodb, names.payees, names.invoices),
        sender=settings.sender_email, webhook_timeout_s=settings.webhook_timeout_s,
        allow_private=settings.webhook_allow_private)

    workers, store = await pipeline(
        settings, clients, intake_queue=names.notification_events,
        task_queue=names.notification_tasks, table=names.notifications,
        state_machine=names.notification_sm, parse=parse_advice, handler=notifier.handle)
    return ServiceParts(workers=workers, routers=[status_router("notifications", store)],
                        readiness=aws_readiness(clients, names.notifications))
