"""The enrichment service: partner notifications in, enriched remittance advices out.

Two intakes feed one job table: JSON partner messages (SQS) and ISO 20022 bank
files (S3 events; ``docs/bankfiles.md``).
"""

from __future__ import annotations

import functools

from services.enrichment.bankfiles.worker import FileIntake, FileOptions
from services.enrichment.handler import handle_task, parse_partner_message
from services.enrichment.kind import ENRICHMENT, PARTNER_FILES
from services.enrichment.settings import EnrichmentSettings
from shared.aws.clients import AwsClients, QueueUrls, string_attributes
from shared.aws.names import Names
from shared.domain.directory import PayeeDirectory
from shared.files.progress import FileProgress
from shared.pipeline.assemble import (
    aws_readiness,
    pipeline,
    state_machine_arn,
    status_router,
    topic_arn,
)
from shared.pipeline.jobs import JobStore
from shared.runtime import ServiceParts
from shared.settings import Settings, deferral, narrow
from shared.tracing import TRACEPARENT, SpanKind, span, traceparent


async def file_intake(core: Settings, clients: AwsClients, store: JobStore) -> FileIntake:
    """The partner-files worker, writing into the same job store as the JSON intake."""
    settings = narrow(core, EnrichmentSettings)
    urls = QueueUrls(clients.sqs)
    queue = PARTNER_FILES.queue_name(settings.prefix)
    return FileIntake(
        sqs=clients.sqs, s3=clients.s3, queue_name=queue, queue_url=await urls.url(queue),
        dlq_url=await urls.url(Names.dlq(queue)), store=store,
        progress=FileProgress.for_prefix(clients.dynamodb, settings.prefix),
        options=FileOptions(max_bytes=settings.partner_files_max_bytes,
                            checkpoint_every=settings.partner_files_checkpoint_every,
                            max_in_flight=settings.partner_files_max_in_flight,
                            wait_s=settings.receive_wait_s,
                            rules=settings.partner_files_rules,
                            visibility_s=settings.visibility_timeout_s,
                            backoff=deferral(settings)))


async def build(settings: Settings, clients: AwsClients) -> ServiceParts:
    directory = PayeeDirectory.for_prefix(clients.dynamodb, settings.prefix)
    kn = ENRICHMENT.names(settings.prefix)
    assert kn.topic is not None
    topic = topic_arn(await state_machine_arn(clients, kn.state_machine), kn.topic)

    async def publish(advice_json: str, attributes: dict[str, str]) -> None:
        # One span per publish; its context rides to the notification intake.
        with span("publish", kind=SpanKind.PRODUCER, messaging__destination__name=topic):
            attrs = {**attributes, TRACEPARENT: traceparent()}
            await clients.sns.publish(TopicArn=topic, Message=advice_json,
                                      MessageAttributes=string_attributes(attrs))

    handler = functools.partial(handle_task, directory=directory, publish=publish,
                                extra_fields=settings.advice_extras_allowed)

    parse = functools.partial(parse_partner_message, extra_fields=settings.advice_extras_allowed)
    workers, store = await pipeline(settings, clients, ENRICHMENT, parse=parse, handler=handler)
    workers.append(await file_intake(settings, clients, store))
    return ServiceParts(workers=workers, routers=[status_router(ENRICHMENT.table, store)],
                        readiness=aws_readiness(clients, store.table))
