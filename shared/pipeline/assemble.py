"""Assembling one job pipeline (intake → table → stream starter → task worker) for a service.

Both services plug their parser, handler and state machine into this; the sweeper
reuses :func:`job_store` and :class:`~shared.pipeline.starter.WorkflowStarter`.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, HTTPException

from shared.aws.clients import AwsClients, QueueUrls
from shared.aws.names import Names
from shared.pipeline.admission import TaskQueueGate
from shared.pipeline.faults import Faults
from shared.pipeline.intake import Intake, Parser
from shared.pipeline.jobs import JobStore, RequestIdPath
from shared.pipeline.kind import JobKind
from shared.pipeline.lifecycle import TOMBSTONES, Tombstones
from shared.pipeline.starter import Inliner, RetryPolicy, WorkflowStarter
from shared.pipeline.tasks import Handler, Task, TaskWorker
from shared.schedule import Schedule, parse_schedule
from shared.settings import Settings
from shared.stream.consumer import (
    DynamoDBStreamSource,
    StreamConsumer,
    StreamOptions,
    per_record,
)
from shared.stream.leases import ShardLeaseTable
from shared.worker import Worker


def owner_id() -> str:
    """Who holds a lease: host and pid, unique per process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def job_store(settings: Settings, clients: AwsClients, kind: JobKind) -> JobStore:
    return JobStore(clients.dynamodb, kind.names(settings.prefix).table,
                    shards=settings.retry.shards, success=kind.success,
                    handoff=kind.handoff is not None,
                    retention_s=settings.lifecycle.retention_s(kind.name),
                    tombstones=Tombstones(clients.dynamodb,
                                          Names(settings.prefix).name(TOMBSTONES)))


def retry_policy(settings: Settings, kind: JobKind | None = None) -> RetryPolicy:
    """The retry policy of ``kind``: which schedule wins, most specific first.

    1. ``REMITFLOW_RETRY_SCHEDULE_<KEY>`` for the job's selecting value (a channel),
       then for the kind's name;
    2. the kind's default schedules; ``REMITFLOW_RETRY_MAX_ATTEMPTS``, when set,
       trims them or repeats their last delay to give that many attempts;
    3. without a kind, :class:`RetryPolicy`'s default (5 attempts, 30 s doubling),
       sized the same way.

    Every delay is then divided by ``REMITFLOW_DEV_TIME_SCALE``
    (docs/delivery.md, "Delivery").
    """
    overrides = settings.retry.schedules
    wanted = settings.retry.max_attempts

    def pick(key: str | None, default: Schedule) -> Schedule:
        if key is not None and key in overrides:
            return parse_schedule(overrides[key])
        return default if wanted is None else default.sized(wanted, fill=30.0)

    if kind is None:
        return RetryPolicy(pick(None, RetryPolicy.schedule), time_scale=settings.dev_time_scale)
    by_value = {value: pick(value, parse_schedule(default))
                for value, default in kind.schedules.items()}
    for key in overrides:  # a channel only configured by variable
        if kind.schedule_by and key not in by_value and key != kind.name:
            by_value[key] = parse_schedule(overrides[key])
    fallback = RetryPolicy.schedule if kind.retry_schedule is None \
        else parse_schedule(kind.retry_schedule)
    return RetryPolicy(pick(kind.name, fallback), by_value=by_value,
                       select=kind.schedule_by, time_scale=settings.dev_time_scale)


def task_gate(settings: Settings, clients: AwsClients, queue: str,
              queue_url: str) -> TaskQueueGate | None:
    """Back-pressure on ``queue`` (``REMITFLOW_TASK_BACKLOG_MAX``; 0 switches it off)."""
    if not settings.task.backlog_max:
        return None
    return TaskQueueGate(clients.sqs, queue_url, queue=queue, limit=settings.task.backlog_max)


def inliner(settings: Settings, kind: JobKind) -> Inliner | None:
    """The starter's inlining for ``kind``: its task view of a payload and the size
    limit, or ``None`` when the kind does not inline or the limit is 0."""
    view = kind.inline_payload
    if view is None or not settings.inline_payload_max_bytes:
        return None
    return Inliner(lambda payload: view(payload, settings), settings.inline_payload_max_bytes)


async def state_machine_arn(clients: AwsClients, name: str) -> str:
    async for page in clients.sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return machine["stateMachineArn"]
    raise RuntimeError(f"state machine {name} not found: run `remitflow bootstrap`")


def topic_arn(state_machine_arn: str, topic: str) -> str:
    """The topic's ARN in the state machine's partition, region and account (no call)."""
    _, partition, _, region, account, *_ = state_machine_arn.split(":")
    return f"arn:{partition}:sns:{region}:{account}:{topic}"


async def pipeline(settings: Settings, clients: AwsClients, kind: JobKind, *, parse: Parser,
                   handler: Handler) -> tuple[list[Worker], JobStore]:
    """The workers of one service (intake, stream starter, task worker), on shared clients.

    Opt-in dev/test faults (``REMITFLOW_FAULTS``) are applied to ``handler`` here, so
    every service gets them the same way.
    """
    faults = Faults(settings.faults.plan)

    async def with_faults(task: Task) -> dict[str, Any]:
        faults.check(task.request_id, task.attempt)
        return await handler(task)

    urls = QueueUrls(clients.sqs)
    kn = kind.names(settings.prefix)
    intake_queue, task_queue, table = kn.intake_queue, kn.task_queue, kn.table
    store = job_store(settings, clients, kind)
    policy = retry_policy(settings, kind)
    task_url = await urls.url(task_queue)
    gate = task_gate(settings, clients, task_queue, task_url)
    starter = WorkflowStarter(clients.sfn, store, await state_machine_arn(clients,
                                                                          kn.state_machine),
                              policy, start_attempts=settings.start_attempts, gate=gate,
                              inline=inliner(settings, kind))
    names = Names(settings.prefix)
    intake = Intake(sqs=clients.sqs, queue_name=intake_queue,
                    queue_url=await urls.url(intake_queue),
                    dlq_url=await urls.url(Names.dlq(intake_queue)), store=store, parse=parse,
                    max_in_flight=settings.max_in_flight, wait_s=settings.receive_wait_s,
                    visibility_s=settings.visibility_timeout_s,
                    retry_base_s=settings.intake.retry_base_s,
                    retry_cap_s=settings.intake.retry_cap_s,
                    continue_trace=kind.subscribes is not None)
    shard_leases = ShardLeaseTable(clients.dynamodb, names.leases, table,
                                   f"{owner_id()}:{uuid.uuid4().hex[:8]}")
    stream = StreamConsumer(source=DynamoDBStreamSource(clients.dynamodb, clients.streams, table),
                            leases=shard_leases, table=table,
                            processor=per_record(starter.on_inserted,
                                                 concurrency=settings.max_in_flight),
                            on_poison=starter.park_record,
                            options=StreamOptions.from_settings(settings))
    starter.stop = stream.stopping  # a start between tries is parked at shutdown
    if gate is not None:
        gate.stop = stream.stopping  # a start waiting for room gives up at shutdown
    tasks = TaskWorker(sqs=clients.sqs, sfn=clients.sfn, queue_name=task_queue,
                       queue_url=task_url, store=store, handler=with_faults,
                       max_in_flight=settings.max_in_flight, wait_s=settings.receive_wait_s,
                       heartbeat_s=settings.task.heartbeat_s,
                       visibility_s=settings.task.visibility_s, retry=policy,
                       dlq_url=await urls.url(Names.dlq(task_queue)))
    return [intake, stream, tasks], store


def status_router(path: str, store: JobStore) -> APIRouter:
    """``GET /v1/<path>/{request_id}``: the job, as ``docs/architecture.md`` ("HTTP") shows."""
    router = APIRouter()

    @router.get(f"/{path}/{{request_id}}")
    async def get_job(request_id: RequestIdPath) -> dict[str, Any]:
        job = await store.get(request_id, consistent=False)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no job with request_id {request_id}")
        return job.public()

    return router


def aws_readiness(clients: AwsClients, table: str) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def check() -> dict[str, Any]:
        try:
            desc = await clients.dynamodb.describe_table(TableName=table)
            return {"aws": True, "table": desc["Table"]["TableStatus"] == "ACTIVE"}
        except Exception as exc:
            return {"aws": False, "error": str(exc)[:200]}
    return check
