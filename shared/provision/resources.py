"""What a service owns beyond its job kinds, as data provisioning reads.

A service declares its :class:`Resources` on its :class:`~shared.service.Service`
(``services/<name>/declaration.py``): file drops, plain tables, and resources only
it knows how to make (:class:`Owned`: the notification service's SES configuration
set and its event queue). ``shared/provision/bootstrap.py`` creates them with the
job kinds' own resources; the sweeper's dead-letter API covers every queue they
declare (:func:`dead_letter_sources`). The pattern (``shared/pipeline``)
never imports this package.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.aws.clients import AwsClients
from shared.aws.names import Names
from shared.files.drop import FileDrop
from shared.pipeline.kind import JobKind, TableSpec
from shared.provision.primitives import EVENT_QUEUE_REDRIVE, ensure_queue, ensure_subscription
from shared.settings import Settings


@dataclass(frozen=True)
class Provisioner:
    """What an owned resource's ``ensure`` is given: settings, clients and the steps
    every event-consuming resource shares (a queue with its DLQ, a subscription)."""

    settings: Settings
    clients: AwsClients

    def name(self, short: str) -> str:
        """``ses-events`` → ``<prefix>-ses-events``."""
        return Names(self.settings.prefix).name(short)

    async def event_queue(self, name: str) -> tuple[str, str]:
        """A queue a service consumes events from, with its DLQ: ``(url, arn)``."""
        return await ensure_queue(self.clients, name,
                                  visibility_s=self.settings.visibility_timeout_s,
                                  max_receive=EVENT_QUEUE_REDRIVE)

    async def subscribe(self, topic_arn: str, queue_url: str) -> None:
        """Raw delivery of ``topic_arn`` into the queue, admitted by its policy."""
        await ensure_subscription(self.clients, topic_arn, queue_url)


class Owned(Protocol):
    """A resource one service owns and knows how to create (idempotently)."""

    def queues(self, prefix: str) -> Sequence[str]:
        """Full names of the queues it creates with a DLQ (the sweeper's dead letters)."""
        ...

    async def ensure(self, ctx: Provisioner) -> Mapping[str, str]:
        """Create or update it; returns name → URL or ARN of what it made."""
        ...


@dataclass(frozen=True)
class Resources:
    """What a service owns beyond its job kinds: static data (no settings needed to
    read it; a drop's bucket may still be a setting, :meth:`FileDrop.resolved`).

    Attributes:
        drops: buckets whose new objects are announced on a queue the service reads.
        tables: plain tables it keeps (webhook endpoint health, file records).
        owned: resources only the service knows how to create.
    """

    drops: tuple[FileDrop, ...] = ()
    tables: tuple[TableSpec, ...] = ()
    owned: tuple[Owned, ...] = ()

    def queues(self, prefix: str) -> list[str]:
        """Every queue these resources create with a DLQ."""
        return [*(q for o in self.owned for q in o.queues(prefix)),
                *(d.queue_name(prefix) for d in self.drops)]


def dead_letter_sources(prefix: str, kinds: Sequence[JobKind],
                        resources: Resources) -> list[str]:
    """Every queue bootstrap gives a DLQ, read from the same declarations it reads.

    Per kind its intake and task queue; the queues of the services' declared
    resources (file drops, the SES-event queue); the execution-status queue.
    ``tests/services/sweeper/test_operator_actions.py`` checks this against the DLQs
    bootstrap really made.
    """
    kinds_queues = [q for kind in kinds for q in (kind.names(prefix).intake_queue,
                                                  kind.names(prefix).task_queue)]
    return [*kinds_queues, *resources.queues(prefix), Names(prefix).execution_status]


NO_RESOURCES = Resources()
"""A service that owns nothing beyond its job kinds."""


def combined(resources: Iterable[Resources]) -> Resources:
    """The resources of a whole deployment, in declaration order."""
    resources = tuple(resources)
    return Resources(drops=tuple(d for r in resources for d in r.drops),
                     tables=tuple(t for r in resources for t in r.tables),
                     owned=tuple(o for r in resources for o in r.owned))
