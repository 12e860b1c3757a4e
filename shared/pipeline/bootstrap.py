"""``remitflow bootstrap``: create or update every resource, idempotently.

The resources are listed in ``docs/architecture.md`` ("Resource names").

Works against any ``AWS_ENDPOINT_URL`` (moto, LocalStack) or real AWS. Running it
twice changes nothing: each step reads what exists and only creates what is
missing or updates what differs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

from aiobotocore.session import get_session

from shared.aws.clients import AwsClients, error_code
from shared.aws.names import LEASE_GROUP, LEASE_KEY, LEASE_TTL, Names
from shared.files.drop import FileDrop, ensure_file_drop
from shared.logs import get_logger
from shared.operations.status_events import DETAIL_TYPE as STATUS_DETAIL_TYPE
from shared.operations.status_events import SETTLING as STATUS_SETTLING
from shared.pipeline.indexes import PROJECTION as INDEX_PROJECTION
from shared.pipeline.kind import JobKind, TableSpec
from shared.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

log = get_logger(__name__)

JOB_INDEXES = (
    ("retry-index", "retry_job", "next_attempt_at", "N"),
    ("failed-index", "failed_job", "failed_at", "S"),
    ("running-index", "running_job", "running_since", "N"),
)
# Keys only (shared/pipeline/indexes.py says why; docs/indexes.md how to migrate a table).
JOB_INDEX_PROJECTION: dict[str, Any] = dict(INDEX_PROJECTION)
# Tables of kinds that publish: every succeeded job, keys only (1 WRU when it enters,
# never rewritten), read by time window by the hand-off check.
HANDOFF_INDEXES = (("handoff-index", "handoff_job", "handoff_at", "S"),)
TASK_QUEUE_REDRIVE = 5
# Intake queues: the DLQ is our decision (an invalid message, moved with its reason);
# transient failures back off through visibility and never count. SQS's own redrive
# stays only as a backstop for a message that crashes the process itself, at SQS's
# maximum (with backoff capped at REMITFLOW_INTAKE_RETRY_CAP_S that is days of outage).
EVENT_QUEUE_REDRIVE = 1000


def load_definition(source: Traversable, substitutions: dict[str, Any]) -> str:
    """Read an ASL file kept in the repo and substitute ``${Name}`` placeholders.

    A string that is exactly ``"${Name}"`` takes the substitution's type (numbers
    stay numbers), so the files remain valid JSON.
    """
    text = source.read_text()

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and "${" in node:
            for key, value in substitutions.items():
                if node == f"${{{key}}}":
                    return value
                node = node.replace(f"${{{key}}}", str(value))
        return node

    return json.dumps(walk(json.loads(text)), indent=2, sort_keys=True)


async def _ensure_ttl(ddb: DynamoDBClient, name: str, attribute: str) -> None:
    """Turn on DynamoDB's expiry by ``attribute`` (idempotent)."""
    desc = (await ddb.describe_time_to_live(TableName=name))["TimeToLiveDescription"]
    if desc.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") \
            and desc.get("AttributeName") == attribute:
        return
    await ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": attribute})
    log.info("bootstrap.updated", kind="table", name=name, change=f"ttl {attribute}")


async def _ensure_table(ddb: DynamoDBClient, name: str, key: str, *, job: bool,
                        handoff: bool = False, sort: str | None = None) -> None:
    try:
        desc = (await ddb.describe_table(TableName=name))["Table"]
    except Exception as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        desc = None
    attrs: list[Any] = [{"AttributeName": k, "AttributeType": "S"} for k in (key, sort) if k]
    schema: list[Any] = [{"AttributeName": key, "KeyType": "HASH"}]
    if sort:
        schema.append({"AttributeName": sort, "KeyType": "RANGE"})
    if desc is not None and desc["KeySchema"] != schema:
        # A key schema cannot change in place (docs/runbook.md, "Leases table key").
        raise RuntimeError(
            f"table {name} has the key {desc['KeySchema']}, this version needs {schema}: "
            "see docs/runbook.md, 'Leases table key'")
    gsis: list[Any] = []
    if job:
        for index, pk, sk, sk_type in JOB_INDEXES:
            attrs += [{"AttributeName": pk, "AttributeType": "S"},
                      {"AttributeName": sk, "AttributeType": sk_type}]
            gsis.append({"IndexName": index,
                         "KeySchema": [{"AttributeName": pk, "KeyType": "HASH"},
                                       {"AttributeName": sk, "KeyType": "RANGE"}],
                         "Projection": dict(JOB_INDEX_PROJECTION)})
    for index, pk, sk, sk_type in HANDOFF_INDEXES if job and handoff else ():
        attrs += [{"AttributeName": pk, "AttributeType": "S"},
                  {"AttributeName": sk, "AttributeType": sk_type}]
        gsis.append({"IndexName": index,
                     "KeySchema": [{"AttributeName": pk, "KeyType": "HASH"},
                                   {"AttributeName": sk, "KeyType": "RANGE"}],
                     "Projection": {"ProjectionType": "KEYS_ONLY"}})
    if desc is None:
        kwargs: dict[str, Any] = {
            "TableName": name, "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": attrs,
            "KeySchema": schema,
        }
        if job:
            kwargs["GlobalSecondaryIndexes"] = gsis
            kwargs["StreamSpecification"] = {"StreamEnabled": True,
                                             "StreamViewType": "NEW_AND_OLD_IMAGES"}
        await ddb.create_table(**kwargs)
        await ddb.get_waiter("table_exists").wait(TableName=name,
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        log.info("bootstrap.created", kind="table", name=name)
        return
    if not job:
        return
    if not desc.get("StreamSpecification", {}).get("StreamEnabled"):
        await ddb.update_table(TableName=name, StreamSpecification={
            "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        log.info("bootstrap.updated", kind="table", name=name, change="stream")
    existing = {g["IndexName"]: g for g in desc.get("GlobalSecondaryIndexes", [])}
    for gsi in gsis:
        if gsi["IndexName"] not in existing:
            await ddb.update_table(TableName=name, AttributeDefinitions=attrs,
                                   GlobalSecondaryIndexUpdates=[{"Create": gsi}])
            log.info("bootstrap.updated", kind="table", name=name, change=gsi["IndexName"])
        elif existing[gsi["IndexName"]].get("Projection") != gsi["Projection"]:
            # A projection cannot change in place, and delete + create leaves the index
            # missing while it backfills: the operator's step (docs/indexes.md). The
            # readers work with either projection meanwhile.
            log.warning("bootstrap.index_projection_differs", table=name,
                        index=gsi["IndexName"], has=existing[gsi["IndexName"]].get("Projection"),
                        wants=gsi["Projection"], fix="docs/indexes.md")


async def _ensure_queue(clients: AwsClients, name: str, *, visibility_s: int,
                        max_receive: int) -> tuple[str, str]:
    sqs = clients.sqs
    dlq_url = (await sqs.create_queue(QueueName=Names.dlq(name), Attributes={
        "MessageRetentionPeriod": "1209600"}))["QueueUrl"]
    dlq_arn = (await sqs.get_queue_attributes(
        QueueUrl=dlq_url, AttributeNames=["QueueArn"]))["Attributes"]["QueueArn"]
    wanted: dict[Any, str] = {
        "VisibilityTimeout": str(visibility_s),
        "MessageRetentionPeriod": "1209600",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(max_receive)}),
    }
    try:
        url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
    except Exception as exc:
        if "NonExistentQueue" not in error_code(exc):
            raise
        url = (await sqs.create_queue(QueueName=name, Attributes=wanted))["QueueUrl"]
        log.info("bootstrap.created", kind="queue", name=name)
    else:
        current: dict[Any, str] = dict((await sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["All"]))["Attributes"])
        diff = {k: v for k, v in wanted.items() if not _same_attribute(current.get(k), v)}
        if diff:
            await sqs.set_queue_attributes(QueueUrl=url, Attributes=diff)
            log.info("bootstrap.updated", kind="queue", name=name, change=sorted(diff))
    arn = (await sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"]["QueueArn"]
    return url, arn


def _same_attribute(current: str | None, wanted: str) -> bool:
    """Queue attributes compare as JSON where they are JSON (numbers may come back typed)."""
    if current == wanted:
        return True
    try:
        return bool(_normalise(json.loads(current or "null")) == _normalise(json.loads(wanted)))
    except ValueError:
        return False


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: str(v) for k, v in value.items()}
    return value


async def _ensure_sfn_role(settings: Settings, names: Names) -> str:
    """The role Step Functions assumes: a setting on real AWS, created in emulators."""
    kwargs: dict[str, Any] = {"region_name": settings.aws_region}
    if settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
    async with get_session().create_client("iam", **kwargs) as iam:
        try:
            role = await iam.get_role(RoleName=names.sfn_role)
            return str(role["Role"]["Arn"])
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"},
            "Action": "sts:AssumeRole"}]}
        role = await iam.create_role(RoleName=names.sfn_role,
                                     AssumeRolePolicyDocument=json.dumps(trust))
        log.info("bootstrap.created", kind="role", name=names.sfn_role)
        return str(role["Role"]["Arn"])


async def _ensure_state_machine(clients: AwsClients, name: str, definition: str,
                                role_arn: str) -> str:
    sfn = clients.sfn
    paginator = sfn.get_paginator("list_state_machines")
    async for page in paginator.paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                arn = machine["stateMachineArn"]
                current = await sfn.describe_state_machine(stateMachineArn=arn)
                if current["definition"] != definition or current["roleArn"] != role_arn:
                    await sfn.update_state_machine(stateMachineArn=arn, definition=definition,
                                                   roleArn=role_arn)
                    log.info("bootstrap.updated", kind="state_machine", name=name)
                return arn
    created = await sfn.create_state_machine(name=name, definition=definition,
                                             roleArn=role_arn, type="STANDARD")
    log.info("bootstrap.created", kind="state_machine", name=name)
    return created["stateMachineArn"]


async def bootstrap(settings: Settings, clients: AwsClients, kinds: Sequence[JobKind],
                    tables: Sequence[TableSpec] = (),
                    sfn_role_arn: str | None = None,
                    drops: Sequence[FileDrop] = ()) -> dict[str, str]:
    """Create or update every resource the job kinds and tables need; returns ARNs/URLs.

    Per kind: the job table (stream, sparse indexes), the intake and task queues
    with their DLQs, the topic it publishes to, the subscription of its intake
    queue to a topic, and its state machine. Plus the leases table, ``tables`` and
    per file drop its bucket, queue (+DLQ) and ``ObjectCreated`` notification.
    """
    names = Names(settings.prefix)
    ddb = clients.dynamodb
    resolved = [(kind, kind.names(settings.prefix)) for kind in kinds]
    for kind, kn in resolved:
        await _ensure_table(ddb, kn.table, "request_id", job=True,
                            handoff=kind.handoff is not None)
    for spec in (*tables, *(t for kind in kinds for t in kind.extra_tables)):
        await _ensure_table(ddb, names.name(spec.short), spec.key, job=False)
        if spec.ttl:
            await _ensure_ttl(ddb, names.name(spec.short), spec.ttl)
    await _ensure_table(ddb, names.leases, LEASE_GROUP, sort=LEASE_KEY, job=False)
    await _ensure_ttl(ddb, names.leases, LEASE_TTL)

    out: dict[str, str] = {}
    for _, kn in resolved:
        out[kn.task_queue], _ = await _ensure_queue(
            clients, kn.task_queue, visibility_s=settings.task_visibility_s,
            max_receive=TASK_QUEUE_REDRIVE)
        out[kn.intake_queue], _ = await _ensure_queue(
            clients, kn.intake_queue, visibility_s=settings.visibility_timeout_s,
            max_receive=EVENT_QUEUE_REDRIVE)
    for drop in drops:
        out.update(await ensure_file_drop(
            clients, drop, settings.prefix,
            lambda name: _ensure_queue(clients, name, visibility_s=settings.visibility_timeout_s,
                                       max_receive=EVENT_QUEUE_REDRIVE)))
    topics = {t for _, kn in resolved for t in (kn.topic, kn.subscribes) if t}
    for topic in sorted(topics):
        out[topic] = (await clients.sns.create_topic(Name=topic))["TopicArn"]
    for _, kn in resolved:
        if kn.subscribes:
            await _ensure_subscription(clients, out[kn.subscribes], out[kn.intake_queue])
    for kind, _ in resolved:
        if kind.ses_events:
            name = names.name(kind.ses_events)
            out[name] = await _ensure_ses_events(settings, clients, name)

    role_arn = sfn_role_arn or await _ensure_sfn_role(settings, names)
    common = {"HeartbeatSeconds": settings.task_heartbeat_timeout_s,
              "TaskTimeoutSeconds": settings.task_timeout_s,
              "WorkflowTimeoutSeconds": settings.workflow_timeout_s}
    for kind, kn in resolved:
        subs: dict[str, Any] = {**common, "TasksQueueUrl": out[kn.task_queue],
                                "JobTable": kn.table}
        if kn.topic:
            subs["TopicArn"] = out[kn.topic]
        out[kn.state_machine] = await _ensure_state_machine(
            clients, kn.state_machine, load_definition(kind.definition, subs), role_arn)
    machines = [out[kn.state_machine] for _, kn in resolved]
    out[names.execution_status] = await _ensure_status_events(settings, clients, names,
                                                              machines)
    await clients.ses.verify_email_identity(EmailAddress=settings.sender_email)
    log.info("bootstrap.done", prefix=settings.prefix)
    return out


async def _ensure_status_events(settings: Settings, clients: AwsClients, names: Names,
                                machines: Sequence[str]) -> str:
    """Rule on the default bus: our executions that ended badly → the status queue.

    ``docs/architecture.md``, "Execution status events". Put as a whole each time
    (``PutRule``/``PutTargets`` are idempotent), so the pattern follows the kinds.
    """
    queue = names.execution_status
    url, queue_arn = await _ensure_queue(clients, queue,
                                         visibility_s=settings.visibility_timeout_s,
                                         max_receive=EVENT_QUEUE_REDRIVE)
    pattern = {"source": ["aws.states"], "detail-type": [STATUS_DETAIL_TYPE],
               "detail": {"status": list(STATUS_SETTLING),
                          "stateMachineArn": sorted(machines)}}
    kwargs: dict[str, Any] = {"region_name": settings.aws_region}
    if settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
    async with get_session().create_client("events", **kwargs) as events:
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


SES_EVENT_TYPES = ("send", "reject", "renderingFailure", "delivery", "bounce", "complaint",
                   "deliveryDelay")


async def _ensure_ses_events(settings: Settings, clients: AwsClients, name: str) -> str:
    """SES configuration set ``name`` → topic ``name`` → queue ``name`` (with its DLQ).

    The kind's e-mails name the set, so SES publishes their sending events
    (``docs/architecture.md``, "SES events"). Returns the queue URL.
    """
    url, _ = await _ensure_queue(clients, name, visibility_s=settings.visibility_timeout_s,
                                 max_receive=EVENT_QUEUE_REDRIVE)
    topic_arn = (await clients.sns.create_topic(Name=name))["TopicArn"]
    account = topic_arn.split(":")[4]
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "ses-events", "Effect": "Allow", "Principal": {"Service": "ses.amazonaws.com"},
        "Action": "sns:Publish", "Resource": topic_arn,
        "Condition": {"StringEquals": {"AWS:SourceAccount": account}}}]}
    await clients.sns.set_topic_attributes(TopicArn=topic_arn, AttributeName="Policy",
                                           AttributeValue=json.dumps(policy))
    await _ensure_subscription(clients, topic_arn, url)
    ses = clients.ses
    try:
        await ses.create_configuration_set(ConfigurationSet={"Name": name})
        log.info("bootstrap.created", kind="configuration_set", name=name)
    except Exception as exc:
        if "AlreadyExists" not in error_code(exc):
            raise
    current = await ses.describe_configuration_set(
        ConfigurationSetName=name, ConfigurationSetAttributeNames=["eventDestinations"])
    if not [d for d in current.get("EventDestinations") or [] if d]:
        destination: Any = {"Name": f"{name}-sns", "Enabled": True,
                             "MatchingEventTypes": list(SES_EVENT_TYPES),
                             "SNSDestination": {"TopicARN": topic_arn}}
        await ses.create_configuration_set_event_destination(
            ConfigurationSetName=name, EventDestination=destination)
        log.info("bootstrap.created", kind="event_destination", name=f"{name}-sns")
    return url


async def _ensure_subscription(clients: AwsClients, topic_arn: str, queue_url: str) -> None:
    sqs, sns = clients.sqs, clients.sns
    queue_arn = (await sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"]))["Attributes"]["QueueArn"]
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "topic-to-queue", "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}}]}
    await sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    subs = await sns.list_subscriptions_by_topic(TopicArn=topic_arn)
    for sub in subs.get("Subscriptions", []):
        if sub.get("Endpoint") == queue_arn:
            return
    await sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn,
                        Attributes={"RawMessageDelivery": "true"}, ReturnSubscriptionArn=True)
    log.info("bootstrap.created", kind="subscription", topic=topic_arn)


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
