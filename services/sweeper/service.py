"""The sweeper service: re-drives due retries, fails the hopeless, reconciles the lost.

One :class:`~shared.operations.sweep.Sweeper` over every job kind it is given
(the entry point passes them; this service imports no other service), each with
the retry policy from settings, plus the ``/v1/jobs``, ``/v1/sweep`` and
``/v1/deadletters`` routes and the operator console under ``/console``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from services.sweeper.api import api_actor, deadletters_router, jobs_router, payees_router
from services.sweeper.console import console_router
from services.sweeper.console.app import SECURITY_HEADERS
from services.sweeper.erasure import ErasureScope
from services.sweeper.settings import SweeperSettings
from shared.aws.clients import AwsClients, QueueUrls
from shared.aws.names import Names
from shared.domain.directory import INVOICES, PAYEES
from shared.domain.erasure import scrub_job, subject_of
from shared.files.progress import FILE_RECORDS, FileProgress
from shared.operations.archive import (
    ARCHIVE_LEASES,
    Archive,
    ArchiveLookup,
    Archiver,
    ArchiveTarget,
    Sealing,
)
from shared.operations.deadletters import DeadLetters
from shared.operations.facade import Operations
from shared.operations.handoff import HandoffCheck
from shared.operations.leader import Leases
from shared.operations.sealing import SUBJECT_KEYS, SubjectKeys
from shared.operations.status_events import ExecutionEvents
from shared.operations.sweep import Sweeper, SweepTarget
from shared.pipeline.assemble import (
    aws_readiness,
    inliner,
    job_store,
    owner_id,
    retry_policy,
    state_machine_arn,
    task_gate,
    topic_arn,
)
from shared.pipeline.kind import JobKind
from shared.pipeline.lifecycle import TOMBSTONES, Tombstones
from shared.pipeline.starter import WorkflowStarter
from shared.provision.resources import NO_RESOURCES, Resources, dead_letter_sources
from shared.runtime import Builder, ServiceParts
from shared.settings import Settings, deferral, narrow
from shared.stream.consumer import (
    DynamoDBStreamSource,
    StreamConsumer,
    StreamOptions,
    per_record,
)
from shared.stream.leases import ShardLeaseTable


async def build_sweeper(core: Settings, clients: AwsClients,
                        kinds: Sequence[JobKind]) -> Sweeper:
    settings = narrow(core, SweeperSettings)
    names = Names(settings.prefix)
    targets = []
    queues: list[str] = []
    for kind in kinds:
        kn = kind.names(settings.prefix)
        store = job_store(settings, clients, kind)
        policy = retry_policy(settings, kind)
        gate = task_gate(settings, clients, kn.task_queue,
                         await QueueUrls(clients.sqs).url(kn.task_queue))
        starter = WorkflowStarter(clients.sfn, store,
                                  await state_machine_arn(clients, kn.state_machine),
                                  policy, start_attempts=settings.start_attempts, gate=gate,
                                  inline=inliner(settings, kind))
        targets.append(SweepTarget(kind.table, store, starter, kind.output_fields,
                                   kind.in_doubt_field, kind.operator_output))
        queues += [q for queue in (kn.intake_queue, kn.task_queue)
                   for q in (queue, Names.dlq(queue))]
    queues += [names.execution_status, Names.dlq(names.execution_status)]
    leases = (Leases(clients.dynamodb, names.leases, owner_id(), settings.lease_ttl_s)
              if settings.sweeper_leader_lease else None)
    return Sweeper(targets=targets, sqs=clients.sqs, queues=queues, leases=leases,
                   interval_s=settings.sweeper_interval_s,
                   reconcile_after_s=settings.reconcile_after_effective_s,
                   start_check_after_s=settings.start_check_after_s,
                   gauges_every_s=settings.queue_depth_interval_s,
                   handoffs=await handoff_checks(settings, clients, kinds))


async def handoff_checks(core: Settings, clients: AwsClients,
                         kinds: Sequence[JobKind]) -> list[HandoffCheck]:
    """One hand-off check per publishing kind, against the kinds subscribed to its topic."""
    settings = narrow(core, SweeperSettings)
    checks = []
    for kind in kinds:
        subscribers = [k.names(settings.prefix).table for k in kinds
                       if kind.publishes and k.subscribes == kind.publishes]
        if kind.handoff is None or not subscribers:
            continue
        kn = kind.names(settings.prefix)
        assert kn.topic is not None
        checks.append(HandoffCheck(
            dynamodb=clients.dynamodb, sns=clients.sns, table=kn.table,
            subscribers=subscribers,
            topic_arn=topic_arn(await state_machine_arn(clients, kn.state_machine), kn.topic),
            message_field=kind.handoff.field, attributes=kind.handoff.attributes,
            success=kind.success, leases_table=Names(settings.prefix).leases,
            shards=settings.retry.shards, grace_s=settings.handoff_grace_effective_s,
            max_repairs=settings.handoff_max_repairs))
    return checks


def archivers(settings: Settings, clients: AwsClients,
              kinds: Sequence[JobKind]) -> list[StreamConsumer]:
    """One stream consumer per job table, with shard leases of its own (the table's
    second reader, beside its service's starter): tombstones and the archive
    (``shared/operations/archive.py``)."""
    names = Names(settings.prefix)
    archive = Archive(clients.s3, settings.archive_bucket_name)
    tombstones = Tombstones(clients.dynamodb, names.name(TOMBSTONES))
    keep_s = settings.lifecycle.idempotency_days * 86400.0
    out = []
    for kind in kinds:
        table = kind.names(settings.prefix).table
        archiver = Archiver(archive, tombstones, ArchiveTarget(table, kind.table, keep_s),
                            sealing=sealing(settings, clients))
        leases = ShardLeaseTable(clients.dynamodb, names.leases, f"{table}{ARCHIVE_LEASES}",
                                 f"{owner_id()}:{uuid.uuid4().hex[:8]}")
        out.append(StreamConsumer(
            source=DynamoDBStreamSource(clients.dynamodb, clients.streams, table),
            leases=leases, table=f"{table}{ARCHIVE_LEASES}",
            processor=per_record(archiver.on_records, concurrency=settings.max_in_flight),
            options=StreamOptions.from_settings(settings, events=frozenset({"MODIFY",
                                                                            "REMOVE"}))))
    return out


def subject_keys(settings: Settings, clients: AwsClients) -> SubjectKeys:
    return SubjectKeys(clients.dynamodb, Names(settings.prefix).name(SUBJECT_KEYS))


def sealing(settings: Settings, clients: AwsClients) -> Sealing:
    """Archive records sealed per payee; the clear part is the job with personal data
    erased (``shared/domain/erasure.py``)."""
    return Sealing(subject_keys(settings, clients), subject_of, scrub_job)


def erasure_scope(settings: Settings, clients: AwsClients, ops: Operations,
                  resources: Resources) -> ErasureScope:
    """Everywhere a payee's personal data is written (``services/sweeper/erasure.py``):
    the job tables, the reference data and every plain table the services declare."""
    names = Names(settings.prefix)
    return ErasureScope(
        clients.dynamodb, {short: t.store for short, t in ops.targets.items()},
        payees=names.name(PAYEES), invoices=names.name(INVOICES),
        kind_tables=[(names.name(spec.short), spec.key) for spec in resources.tables
                     if spec.short not in (PAYEES, INVOICES, FILE_RECORDS.short)],
        keys=subject_keys(settings, clients))


def archive_lookup(settings: Settings, clients: AwsClients,
                   kinds: Sequence[JobKind]) -> ArchiveLookup:
    """Expired jobs of these kinds, by table and request id (the timeline, the CLI)."""
    return ArchiveLookup(
        Archive(clients.s3, settings.archive_bucket_name),
        Tombstones(clients.dynamodb, Names(settings.prefix).name(TOMBSTONES)),
        {kind.table: kind.names(settings.prefix).table for kind in kinds},
        keys=subject_keys(settings, clients))


async def build_status_events(settings: Settings, clients: AwsClients,
                              sweeper: Sweeper) -> ExecutionEvents:
    """The consumer of execution status events, over the sweeper's targets."""
    queue = Names(settings.prefix).execution_status
    urls = QueueUrls(clients.sqs)
    return ExecutionEvents(
        sqs=clients.sqs, queue_name=queue, queue_url=await urls.url(queue),
        dlq_url=await urls.url(Names.dlq(queue)),
        targets={t.starter.state_machine_arn: t for t in sweeper.targets.values()},
        max_in_flight=settings.max_in_flight, wait_s=settings.receive_wait_s,
        visibility_s=settings.visibility_timeout_s, backoff=deferral(settings))


def dead_letters(settings: Settings, clients: AwsClients, kinds: Sequence[JobKind],
                 resources: Resources = NO_RESOURCES) -> DeadLetters:
    """Every DLQ bootstrap creates for these kinds and the services' declared resources
    (derived, not listed)."""
    return DeadLetters(clients.sqs, dead_letter_sources(settings.prefix, kinds, resources))


def _readiness(clients: AwsClients, settings: Settings,
               kinds: Sequence[JobKind]) -> Callable[[], Awaitable[dict[str, Any]]]:
    checks = {kind.table: aws_readiness(clients, kind.names(settings.prefix).table)
              for kind in kinds}

    async def check() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for short, probe in checks.items():
            out.update({f"{short}_{k}": v for k, v in (await probe()).items()})
        return out

    return check


def builder(kinds: Sequence[JobKind], resources: Resources = NO_RESOURCES) -> Builder:
    """The sweeper's ``build`` for the given job kinds and declared resources (the entry
    point knows them all; the dead-letter API and console cover every one of their DLQs)."""

    async def build(settings: Settings, clients: AwsClients) -> ServiceParts:
        sweeper = await build_sweeper(settings, clients, kinds)
        events = await build_status_events(settings, clients, sweeper)
        letters = dead_letters(settings, clients, kinds, resources)
        token = settings.api.token.get_secret_value() if settings.api.token else None
        actor = api_actor(token)
        ops = Operations.of(sweeper)
        console = console_router(
            ops, letters, token=token, leases_table=Names(settings.prefix).leases,
            dynamodb=clients.dynamodb,
            files=FileProgress.for_prefix(clients.dynamodb, settings.prefix),
            archive=archive_lookup(settings, clients, kinds))
        return ServiceParts(workers=[sweeper, events, *archivers(settings, clients, kinds)],
                            routers=[jobs_router(ops, actor),
                                     deadletters_router(letters, actor),
                                     payees_router(erasure_scope(settings, clients, ops,
                                                                 resources), actor)],
                            readiness=_readiness(clients, settings, kinds), pages=[console],
                            page_headers=dict(SECURITY_HEADERS))

    return build
