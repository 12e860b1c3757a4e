"""``remitflow bootstrap``: create or update every resource, idempotently.

Reads the job kinds and the services' declared :class:`~shared.provision.resources.
Resources`; the resources are listed in ``docs/architecture.md`` ("Resource names").
Works against any ``AWS_ENDPOINT_URL`` (moto, LocalStack) or real AWS. Running it
twice changes nothing: each step reads what exists and only creates what is missing
or updates what differs (``shared/provision/primitives.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shared.aws.clients import AwsClients, client_args, session
from shared.aws.names import LEASE_GROUP, LEASE_KEY, LEASE_TTL, Names
from shared.logs import get_logger
from shared.operations.status_events import DETAIL_TYPE as STATUS_DETAIL_TYPE
from shared.operations.status_events import SETTLING as STATUS_SETTLING
from shared.pipeline.kind import JobKind
from shared.provision.lifecycle import ensure_lifecycle
from shared.provision.primitives import (
    EVENT_QUEUE_REDRIVE,
    TASK_QUEUE_REDRIVE,
    ensure_file_drop,
    ensure_queue,
    ensure_sfn_role,
    ensure_state_machine,
    ensure_subscription,
    ensure_table,
    ensure_ttl,
    load_definition,
)
from shared.provision.resources import NO_RESOURCES, Provisioner, Resources
from shared.settings import Settings

log = get_logger(__name__)


async def bootstrap(settings: Settings, clients: AwsClients, kinds: Sequence[JobKind],
                    resources: Resources = NO_RESOURCES,
                    sfn_role_arn: str | None = None) -> dict[str, str]:
    """Create or update every resource the job kinds and ``resources`` need; returns
    name → ARN or URL.

    Per kind: the job table (stream, sparse indexes), the intake and task queues
    with their DLQs, the topic it publishes to, the subscription of its intake
    queue to a topic, and its state machine. Plus the leases table, the execution
    status rule and queue, and ``resources``: plain tables, per file drop its bucket,
    queue (+DLQ) and ``ObjectCreated`` notification, and what services own.
    """
    names = Names(settings.prefix)
    ddb = clients.dynamodb
    resolved = [(kind, kind.names(settings.prefix)) for kind in kinds]
    for kind, kn in resolved:
        await ensure_table(ddb, kn.table, "request_id", job=True,
                           handoff=kind.handoff is not None)
    for spec in resources.tables:
        await ensure_table(ddb, names.name(spec.short), spec.key, job=False)
        if spec.ttl:
            await ensure_ttl(ddb, names.name(spec.short), spec.ttl)
    await ensure_table(ddb, names.leases, LEASE_GROUP, sort=LEASE_KEY, job=False)
    await ensure_ttl(ddb, names.leases, LEASE_TTL)

    out: dict[str, str] = {}
    for _, kn in resolved:
        out[kn.task_queue], _ = await ensure_queue(
            clients, kn.task_queue, visibility_s=settings.task.visibility_s,
            max_receive=TASK_QUEUE_REDRIVE)
        out[kn.intake_queue], _ = await ensure_queue(
            clients, kn.intake_queue, visibility_s=settings.visibility_timeout_s,
            max_receive=EVENT_QUEUE_REDRIVE)
    ctx = Provisioner(settings, clients)
    for drop in resources.drops:
        out.update(await ensure_file_drop(clients, drop.resolved(settings), settings.prefix,
                                          ctx.event_queue))
    topics = {t for _, kn in resolved for t in (kn.topic, kn.subscribes) if t}
    for topic in sorted(topics):
        out[topic] = (await clients.sns.create_topic(Name=topic))["TopicArn"]
    for _, kn in resolved:
        if kn.subscribes:
            await ensure_subscription(clients, out[kn.subscribes], out[kn.intake_queue])
    for owned in resources.owned:
        out.update(await owned.ensure(ctx))

    role_arn = sfn_role_arn or await ensure_sfn_role(settings, names)
    common = {"HeartbeatSeconds": settings.task.heartbeat_timeout_s,
              "TaskTimeoutSeconds": settings.task.timeout_s,
              "WorkflowTimeoutSeconds": settings.task.workflow_timeout_s}
    for kind, kn in resolved:
        subs: dict[str, Any] = {**common, "TasksQueueUrl": out[kn.task_queue],
                                "JobTable": kn.table}
        if kn.topic:
            subs["TopicArn"] = out[kn.topic]
        out[kn.state_machine] = await ensure_state_machine(
            clients, kn.state_machine, load_definition(kind.definition, subs), role_arn)
    machines = [out[kn.state_machine] for _, kn in resolved]
    out[names.execution_status] = await _ensure_status_events(settings, clients, names,
                                                              machines)
    await ensure_lifecycle(settings, clients, kinds)   # TTL, tombstones, keys, archive
    log.info("bootstrap.done", prefix=settings.prefix)
    return out


async def _ensure_status_events(settings: Settings, clients: AwsClients, names: Names,
                                machines: Sequence[str]) -> str:
    """Rule on the default bus: our executions that ended badly → the status queue.

    ``docs/architecture.md``, "Execution status events". Put as a whole each time
    (``PutRule``/``PutTargets`` are idempotent), so the pattern follows the kinds.
    """
    queue = names.execution_status
    url, queue_arn = await ensure_queue(clients, queue,
                                         visibility_s=settings.visibility_timeout_s,
                                         max_receive=EVENT_QUEUE_REDRIVE)
    pattern = {"source": ["aws.states"], "detail-type": [STATUS_DETAIL_TYPE],
               "detail": {"status": list(STATUS_SETTLING),
                          "stateMachineArn": sorted(machines)}}
    async with session().create_client("events", **client_args(settings)) as events:
        rule_arn = (await events.put_rule(Name=queue, EventPattern=json.dumps(pattern),
                                          State="ENABLED",
                                          Description="remitflow: executions that ended "
                                                      "without their own status write"))["RuleArn"]
        await events.put_targets(Rule=queue, Targets=[{"Id": "status-queue", "Arn": queue_arn}])
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "rule-to-queue", "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}]}
    await clients.sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    return url


async def load_reference_data(clients: AwsClients, settings: Settings,
                              data: dict[str, list[dict[str, Any]]]) -> int:
    """Put rows into plain tables: ``{"payees": [...], "invoices": [...]}`` by short name."""
    from shared.aws.dynamo import to_item

    names = Names(settings.prefix)
    count = 0
    for table, rows in ((names.name(short), rows) for short, rows in data.items()):
        for start in range(0, len(rows), 25):
            chunk = rows[start:start + 25]
            await clients.dynamodb.batch_write_item(RequestItems={
                table: [{"PutRequest": {"Item": to_item(row)}} for row in chunk]})
            count += len(chunk)
    return count
