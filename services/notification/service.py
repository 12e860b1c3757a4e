"""The notification service: enriched advices in, payees notified (e-mail or webhook)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from services.notification.endpoints import EndpointHealth
from services.notification.endpoints_api import EndpointGauges, endpoints_router
from services.notification.handler import Notifier, parse_advice
from services.notification.kind import NOTIFICATION
from services.notification.pools import HostPools
from services.notification.render import Renderer
from services.notification.resources import ENDPOINTS, SES_SENDING
from services.notification.rules import RuleSet
from services.notification.ses_events import SesEvents
from services.notification.settings import NotificationSettings
from shared.aws.clients import AwsClients, QueueUrls
from shared.aws.names import Names
from shared.domain.directory import PayeeDirectory
from shared.pipeline.assemble import (
    aws_readiness,
    job_store,
    pipeline,
    retry_policy,
    state_machine_arn,
    status_router,
)
from shared.pipeline.starter import WorkflowStarter
from shared.pipeline.tasks import TaskWorker
from shared.runtime import ServiceParts
from shared.settings import Settings, deferral, narrow

HERE = Path(__file__).parent
RULES = HERE / "rules.yaml"
TEMPLATES = HERE / "templates"


async def build(core: Settings, clients: AwsClients) -> ServiceParts:
    settings = narrow(core, NotificationSettings)
    # Rules and templates are parsed here, at start-up: a broken file stops the
    # service before it takes work, never at the first payee.
    rules = RuleSet.load(RULES)
    renderer = Renderer.load(TEMPLATES, rules)
    http = HostPools(timeout_s=settings.webhook_timeout_s)
    ses_events_name = SES_SENDING.name(settings.prefix)
    endpoints = EndpointHealth(clients.dynamodb, Names(settings.prefix).name(ENDPOINTS.short),
                               disable_after_s=settings.endpoint_disable_after_s)
    notifier = Notifier(
        store=job_store(settings, clients, NOTIFICATION), rules=rules, renderer=renderer,
        ses=clients.ses, http=http,
        directory=PayeeDirectory.for_prefix(clients.dynamodb, settings.prefix),
        sender=settings.sender_email, webhook_timeout_s=settings.webhook_timeout_s,
        allow_private=settings.webhook_allow_private,
        unknown_outcome=settings.email_unknown_outcome,
        resend_after_s=settings.email_resend_after_s, endpoints=endpoints,
        configuration_set=ses_events_name, ses_event_window_s=settings.ses_event_window_s)

    workers, store = await pipeline(settings, clients, NOTIFICATION, parse=parse_advice,
                                    handler=notifier.handle)
    tasks = workers[-1]
    if isinstance(tasks, TaskWorker):
        notifier.stop = tasks.stopping   # quick webhook retries end at shutdown
    starter = WorkflowStarter(clients.sfn, store, await state_machine_arn(
        clients, NOTIFICATION.names(settings.prefix).state_machine),
        retry_policy(settings, NOTIFICATION), start_attempts=settings.start_attempts)
    token = settings.api.token.get_secret_value() if settings.api.token else None
    urls = QueueUrls(clients.sqs)
    workers.append(SesEvents(sqs=clients.sqs, queue_name=ses_events_name,
                             queue_url=await urls.url(ses_events_name),
                             dlq_url=await urls.url(Names.dlq(ses_events_name)), store=store,
                             starter=starter, max_in_flight=settings.max_in_flight,
                             wait_s=settings.receive_wait_s,
                             visibility_s=settings.visibility_timeout_s,
                             backoff=deferral(settings)))
    workers.append(EndpointGauges(endpoints, interval_s=settings.endpoint_metrics_interval_s,
                                  alert_after_s=settings.endpoint_alert_after_s))
    routers = [status_router(NOTIFICATION.table, store),
               endpoints_router(endpoints, store, starter, actor_label(token))]
    return ServiceParts(workers=workers, routers=routers,
                        readiness=aws_readiness(clients, store.table), closers=[http.aclose])


def actor_label(token: str | None) -> str:
    """``api token <first 8 hex of its SHA-256>``: names the token, never shows it."""
    if not token:
        return "api (auth disabled)"
    return f"api token {hashlib.sha256(token.encode()).hexdigest()[:8]}"
