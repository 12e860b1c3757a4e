"""The deployment: which services run, which job kinds exist, and every resource name.

This is the one place that knows all services at once (the composition root):
``remitflow run``, ``remitflow bootstrap``, the dev runner, the benchmark and the
tests take the job kinds and services from here, so ``shared/`` never names a
service and no service imports another (``docs/architecture.md``, "Layout").
"""

from __future__ import annotations

from dataclasses import dataclass

from services.enrichment.kind import ENRICHMENT, partner_files
from services.notification.kind import NOTIFICATION
from shared.aws.clients import AwsClients
from shared.aws.names import Names
from shared.domain.directory import INVOICES, PAYEES, REFERENCE_TABLES
from shared.files.drop import FileDrop
from shared.files.progress import FILE_RECORDS
from shared.pipeline.kind import JobKind, TableSpec
from shared.runtime import Builder, ServiceParts
from shared.settings import Settings

KINDS: tuple[JobKind, ...] = (ENRICHMENT, NOTIFICATION)
TABLES: tuple[TableSpec, ...] = (
    *(TableSpec(short, key) for short, key in REFERENCE_TABLES), FILE_RECORDS)


def file_drops(settings: Settings) -> tuple[FileDrop, ...]:
    """Buckets whose new objects feed a service (bucket names may come from settings)."""
    return (partner_files(settings),)


@dataclass(frozen=True)
class Service:
    name: str
    port: int


SERVICES: tuple[Service, ...] = (
    Service("enrichment", 8081), Service("notification", 8082), Service("sweeper", 8083))
PORTS: dict[str, int] = {s.name: s.port for s in SERVICES}


def builder(service: str) -> Builder:
    """The ``build`` function of one service (imported lazily: a process loads only its own).

    Job-kind services also report the depth of the dead-letter queues they own.
    """
    if service == "enrichment":
        from services.enrichment.service import build
        return with_dlq_depths(build, ENRICHMENT)
    if service == "notification":
        from services.notification.service import build as build_notification
        return with_dlq_depths(build_notification, NOTIFICATION)
    if service == "sweeper":
        from services.sweeper.service import builder as sweeper_builder
        return sweeper_builder(KINDS)
    raise ValueError(f"unknown service {service!r}: one of {', '.join(PORTS)}")


def with_dlq_depths(build: Builder, kind: JobKind) -> Builder:
    """``build`` plus a worker exporting the depth of ``kind``'s dead-letter queues."""
    from shared.aws.queue_depth import QueueDepths

    async def wrapped(settings: Settings, clients: AwsClients) -> ServiceParts:
        parts = await build(settings, clients)
        kn = kind.names(settings.prefix)
        parts.workers.append(QueueDepths(
            clients.sqs, [Names.dlq(kn.intake_queue), Names.dlq(kn.task_queue)],
            settings.queue_depth_interval_s))
        return parts

    return wrapped


class StackNames(Names):
    """Every resource name of this deployment (``docs/architecture.md``, "Resource names")."""

    @property
    def remittance_events(self) -> str:
        return ENRICHMENT.names(self.prefix).intake_queue

    @property
    def enrichment_tasks(self) -> str:
        return ENRICHMENT.names(self.prefix).task_queue

    @property
    def notification_tasks(self) -> str:
        return NOTIFICATION.names(self.prefix).task_queue

    @property
    def notification_events(self) -> str:
        return NOTIFICATION.names(self.prefix).intake_queue

    @property
    def queues(self) -> tuple[str, ...]:
        return (self.remittance_events, self.enrichment_tasks, self.notification_tasks,
                self.notification_events)

    @property
    def enriched_topic(self) -> str:
        return self.name(ENRICHMENT.publishes or "")

    @property
    def remittances(self) -> str:
        return ENRICHMENT.names(self.prefix).table

    @property
    def notifications(self) -> str:
        return NOTIFICATION.names(self.prefix).table

    @property
    def payees(self) -> str:
        return self.name(PAYEES)

    @property
    def invoices(self) -> str:
        return self.name(INVOICES)

    @property
    def enrichment_sm(self) -> str:
        return ENRICHMENT.names(self.prefix).state_machine

    @property
    def notification_sm(self) -> str:
        return NOTIFICATION.names(self.prefix).state_machine

    @property
    def partner_files_queue(self) -> str:
        return partner_files(Settings(prefix=self.prefix)).queue_name(self.prefix)


async def bootstrap_stack(settings: Settings, clients: AwsClients,
                          sfn_role_arn: str | None = None) -> dict[str, str]:
    """Every resource of this deployment: the kinds, the tables and the file drops."""
    from shared.pipeline.bootstrap import bootstrap

    return await bootstrap(settings, clients, KINDS, TABLES, sfn_role_arn=sfn_role_arn,
                           drops=file_drops(settings))
