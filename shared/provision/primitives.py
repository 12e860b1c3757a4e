"""The building blocks of provisioning: one idempotent ``ensure_*`` per AWS resource.

Each reads what exists and creates only what is missing or updates what differs, so
running provisioning twice changes nothing. Works against any ``AWS_ENDPOINT_URL``
(moto, LocalStack) or real AWS. Names and shapes: ``docs/architecture.md``,
"Resource names".
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

from shared.aws.clients import AwsClients, client_args, error_code, session
from shared.aws.names import Names
from shared.files.drop import FileDrop
from shared.logs import get_logger
from shared.pipeline.indexes import PROJECTION as INDEX_PROJECTION
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


async def ensure_ttl(ddb: DynamoDBClient, name: str, attribute: str) -> None:
    """Turn on DynamoDB's expiry by ``attribute`` (idempotent)."""
    desc = (await ddb.describe_time_to_live(TableName=name))["TimeToLiveDescription"]
    if desc.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") \
            and desc.get("AttributeName") == attribute:
        return
    await ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": attribute})
    log.info("bootstrap.updated", kind="table", name=name, change=f"ttl {attribute}")


async def ensure_table(ddb: DynamoDBClient, name: str, key: str, *, job: bool,
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
        created = (await ddb.create_table(**kwargs))["TableDescription"]
        if created.get("TableStatus") != "ACTIVE":     # AWS answers CREATING: wait for it
            await ddb.get_waiter("table_exists").wait(
                TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
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


async def ensure_queue(clients: AwsClients, name: str, *, visibility_s: int,
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


async def ensure_sfn_role(settings: Settings, names: Names) -> str:
    """The role Step Functions assumes: a setting on real AWS, created in emulators."""
    async with session().create_client("iam", **client_args(settings)) as iam:
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


async def ensure_state_machine(clients: AwsClients, name: str, definition: str,
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


async def ensure_subscription(clients: AwsClients, topic_arn: str, queue_url: str) -> None:
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


async def ensure_file_drop(
        clients: AwsClients, drop: FileDrop, prefix: str,
        ensure_queue: Callable[[str], Awaitable[tuple[str, str]]]) -> dict[str, str]:
    """Bucket, queue (+DLQ via ``ensure_queue``), queue policy and event notification.

    Idempotent: the bucket is created only when missing, the policy and the
    notification configuration are set to the same value each time (S3 replaces
    the whole configuration; this drop owns it). Returns ``{queue: url, bucket: arn}``.
    """
    bucket, queue = drop.bucket_name(prefix), drop.queue_name(prefix)
    s3 = clients.s3
    try:
        await s3.head_bucket(Bucket=bucket)
    except Exception as exc:
        if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        kwargs: dict[str, object] = {"Bucket": bucket}
        region = clients.settings.aws_region
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        await s3.create_bucket(**kwargs)  # type: ignore[arg-type]
        log.info("bootstrap.created", kind="bucket", name=bucket)
    url, queue_arn = await ensure_queue(queue)
    bucket_arn = f"arn:aws:s3:::{bucket}"
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "bucket-to-queue", "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": bucket_arn}}}]}
    await clients.sqs.set_queue_attributes(QueueUrl=url,
                                           Attributes={"Policy": json.dumps(policy)})
    wanted = [{"Id": f"{queue}-created", "QueueArn": queue_arn,
               "Events": ["s3:ObjectCreated:*"]}]
    current = await s3.get_bucket_notification_configuration(Bucket=bucket)
    if [(c.get("QueueArn"), c.get("Events")) for c in current.get("QueueConfigurations", [])] \
            != [(w["QueueArn"], w["Events"]) for w in wanted]:
        await s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": wanted})  # type: ignore[typeddict-item]
        log.info("bootstrap.updated", kind="bucket_notification", name=bucket, queue=queue)
    return {queue: url, bucket: bucket_arn}
