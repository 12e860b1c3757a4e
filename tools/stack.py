"""The deployment: which services run, which job kinds exist, and every resource name.

This is the one place that knows all services at once (the composition root):
``remitflow run``, ``remitflow bootstrap``, the dev runner, the benchmark and the
tests take the job kinds and services from here, so ``shared/`` never names a
service and no service imports another (``docs/architecture.md``, "Layout").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from services.enrichment.declaration import SERVICE as ENRICHMENT_SERVICE
from services.enrichment.kind import ENRICHMENT, PARTNER_FILES
from services.notification.declaration import SERVICE as NOTIFICATION_SERVICE
from services.notification.kind import NOTIFICATION
from services.sweeper.declaration import SERVICE as SWEEPER_SERVICE
from shared.aws.names import Names
from shared.domain.directory import INVOICES, PAYEES, REFERENCE_TABLES
from shared.files.progress import FILE_RECORDS
from shared.pipeline.kind import JobKind, TableSpec
from shared.provision.resources import Resources, combined
from shared.service import Service
from shared.settings import Settings

if TYPE_CHECKING:   # the runtime (FastAPI, uvicorn) only when a service is built
    from shared.aws.clients import AwsClients
    from shared.files.drop import FileDrop
    from shared.runtime import Builder, ServiceParts

SERVICES: tuple[Service, ...] = (ENRICHMENT_SERVICE, NOTIFICATION_SERVICE, SWEEPER_SERVICE)
"""Every service of this deployment: the one list (``docs/architecture.md``, "Adding a
service"). Everything below, and every tool, derives from it."""


def kinds_of(services: Iterable[Service]) -> tuple[JobKind, ...]:
    return tuple(kind for service in services for kind in service.kinds)


KINDS: tuple[JobKind, ...] = kinds_of(SERVICES)
TABLES: tuple[TableSpec, ...] = (
    *(TableSpec(short, key) for short, key in REFERENCE_TABLES), FILE_RECORDS)
PORTS: dict[str, int] = {s.name: s.port for s in SERVICES}


def service_ports(offset: int = 0) -> dict[str, int]:
    """Each service's HTTP port: the declared one plus ``offset`` (two runners side by side)."""
    return {name: port + offset for name, port in PORTS.items()}


def resources_of(services: Iterable[Service] = SERVICES) -> Resources:
    """What the services own beyond their job kinds, combined, plus the deployment's
    plain tables (reference data, file records)."""
    return combined((Resources(tables=TABLES), *(s.resources for s in services)))


def file_drops(settings: Settings, services: Iterable[Service] = SERVICES
               ) -> tuple[FileDrop, ...]:
    """Buckets whose new objects feed a service, their names resolved from settings."""
    return tuple(drop.resolved(settings) for drop in resources_of(services).drops)


def service(name: str, services: Iterable[Service] = SERVICES) -> Service:
    """The declaration of the service called ``name``."""
    found = {s.name: s for s in services}
    if name not in found:
        raise ValueError(f"unknown service {name!r}: one of {', '.join(found)}")
    return found[name]


def builder(name: str, services: Iterable[Service] = SERVICES) -> Builder:
    """The ``build`` function of one service (its code is imported only now: a process
    loads its own service). A service running job kinds also reports the depth of
    their dead-letter queues."""
    services = tuple(services)
    declared = service(name, services)
    build = declared.build(kinds_of(services), resources_of(services))
    return with_dlq_depths(build, declared.kinds) if declared.kinds else build


def with_dlq_depths(build: Builder, kinds: Iterable[JobKind]) -> Builder:
    """``build`` plus a worker exporting the depth of ``kinds``' dead-letter queues."""
    from shared.aws.queue_depth import QueueDepths

    kinds = tuple(kinds)

    async def wrapped(settings: Settings, clients: AwsClients) -> ServiceParts:
        parts = await build(settings, clients)
        queues = [Names.dlq(q) for kind in kinds
                  for q in (kind.names(settings.prefix).intake_queue,
                            kind.names(settings.prefix).task_queue)]
        parts.workers.append(QueueDepths(clients.sqs, queues, settings.queue_depth_interval_s))
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
        """Every job kind's intake and task queue."""
        return tuple(q for kind in KINDS for kn in (kind.names(self.prefix),)
                     for q in (kn.intake_queue, kn.task_queue))

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
        return PARTNER_FILES.queue_name(self.prefix)


async def bootstrap_stack(settings: Settings, clients: AwsClients,
                          sfn_role_arn: str | None = None,
                          services: Iterable[Service] = SERVICES) -> dict[str, str]:
    """Every resource of this deployment: the kinds, what the services declare, and the
    data lifecycle's (TTL, tombstones, archive)."""
    from shared.provision.bootstrap import bootstrap

    services = tuple(services)
    return await bootstrap(settings, clients, kinds_of(services), resources_of(services),
                           sfn_role_arn=sfn_role_arn)


def ports_json(ports: Mapping[str, int] = PORTS) -> str:
    """Service → port, for the container healthcheck (written into the image)."""
    return json.dumps(ports, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The deployment's services.")
    p.add_argument("--ports", action="store_true",
                   help="print service → HTTP port as JSON (the image's healthcheck reads it)")
    args = p.parse_args(argv)
    if args.ports:
        sys.stdout.write(ports_json())
    else:
        for s in SERVICES:
            print(f"{s.name:<14} :{s.port}  kinds: {', '.join(k.name for k in s.kinds) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
