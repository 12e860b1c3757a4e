"""The sweeper service: re-drives due retries, fails the hopeless, reconciles the lost.

One :class:`~shared.sweep.Sweeper` over every job table (remittances with the
enrichment state machine, notifications with the notification one), each with
the retry policy from settings, plus the ``/v1/jobs`` and ``/v1/sweep`` routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from services.sweeper.api import jobs_router
from shared.aws import AwsClients
from shared.leases import Leases
from shared.names import Names
from shared.runtime import ServiceParts
from shared.service import aws_readiness, job_store, owner_id, retry_policy, state_machine_arn
from shared.settings import Settings
from shared.starter import WorkflowStarter
from shared.sweep import Sweeper, SweepTarget

RECONCILE_MARGIN_S = 60.0


def reconcile_after_s(settings: Settings) -> float:
    """How long a job may stay ``RUNNING`` before its execution is looked at.

    Past the workflow's timeout (``Settings.workflow_timeout_s``) an
    execution has ended, so a margin beyond it never reconciles a live attempt.
    """
    if settings.reconcile_after_s is not None:
        return settings.reconcile_after_s
    return settings.workflow_timeout_s + RECONCILE_MARGIN_S


def targets_spec(names: Names) -> tuple[tuple[str, str], ...]:
    """``(table short name, state machine)`` for every job table the sweeper owns."""
    return (("remittances", names.enrichment_sm), ("notifications", names.notification_sm))


async def build_sweeper(settings: Settings, clients: AwsClients) -> Sweeper:
    names = Names(settings.prefix)
    policy = retry_policy(settings)
    targets = []
    for short, machine in targets_spec(names):
        store = job_store(settings, clients, names.table(short))
        starter = WorkflowStarter(clients.sfn, store, await state_machine_arn(clients, machine),
                                  policy, start_attempts=settings.start_attempts)
        targets.append(SweepTarget(short, store, starter))
    leases = (Leases(clients.dynamodb, names.leases, owner_id(), settings.lease_ttl_s)
              if settings.sweeper_leader_lease else None)
    return Sweeper(targets=targets, sqs=clients.sqs,
                   queues=[q for queue in names.queues for q in (queue, Names.dlq(queue))],
                   leases=leases, interval_s=settings.sweeper_interval_s,
                   reconcile_after_s=reconcile_after_s(settings))


def _readiness(clients: AwsClients, names: Names) -> Callable[[], Awaitable[dict[str, Any]]]:
    checks = {short: aws_readiness(clients, names.table(short))
              for short, _ in targets_spec(names)}

    async def check() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for short, probe in checks.items():
            out.update({f"{short}_{k}": v for k, v in (await probe()).items()})
        return out

    return check


async def build(settings: Settings, clients: AwsClients) -> ServiceParts:
    names = Names(settings.prefix)
    sweeper = await build_sweeper(settings, clients)
    return ServiceParts(workers=[sweeper], routers=[jobs_router(sweeper)],
                        readiness=_readiness(clients, names))
