"""The remitflow stack: every AWS resource the services use, from the code's own sources.

Names come from ``tools/stack.py`` (``SERVICES`` and their kinds) and
``JobKind.names(prefix)``, and the resources each service declares (``Resources``:
file drops, tables, the notification service's SES sending); indexes from
``shared/provision/primitives.py`` (``JOB_INDEXES``, ``HANDOFF_INDEXES``); the
workflows from the same ASL files through ``load_definition`` (queue URLs, topic ARN
and table names as CloudFormation tokens, timeouts from ``Settings``); the IAM
policies from ``tools/iam.py``. So the stack cannot drift from what ``remitflow
bootstrap`` creates for local runs, and ``tests/deploy/test_cdk_stack.py`` checks both.

Beyond bootstrap: point-in-time recovery, deletion protection and retention on tables,
optional customer-managed KMS key, tags, SQS-managed encryption on queues, Step Functions
logging and tracing switches, one role per declared service plus one for the workflows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aws_cdk as cdk
from archive_bucket import archive_bucket, private_versioned
from aws_cdk import aws_dynamodb as ddb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_ses as ses
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from services.notification.resources import SesSending
from services.notification.settings import NotificationSettings
from shared.aws.names import LEASE_GROUP, LEASE_KEY, LEASE_TTL, Names
from shared.files.drop import FileDrop
from shared.operations.sealing import SUBJECT_ID, SUBJECT_KEYS
from shared.operations.status_events import DETAIL_TYPE as STATUS_DETAIL_TYPE
from shared.operations.status_events import SETTLING as STATUS_SETTLING
from shared.pipeline.lifecycle import EXPIRES_AT, TOMBSTONE_KEY, TOMBSTONES
from shared.provision.primitives import (
    EVENT_QUEUE_REDRIVE,
    HANDOFF_INDEXES,
    JOB_INDEX_PROJECTION,
    JOB_INDEXES,
    TASK_QUEUE_REDRIVE,
    load_definition,
)
from shared.service import Service
from shared.settings import Settings, narrow
from tools import iam as grants
from tools.stack import SERVICES, file_drops, kinds_of, resources_of

# Same numbers as shared/provision/primitives.py (TASK_QUEUE_REDRIVE, EVENT_QUEUE_REDRIVE).
RETENTION = cdk.Duration.seconds(1_209_600)


@dataclass(frozen=True)
class StackOptions:
    """Deploy-time switches (CDK context, see ``deploy/cdk/cdk.json``).

    Attributes:
        prefix: resource name prefix (``REMITFLOW_PREFIX`` of the services).
        kms_key_arn: customer-managed key for tables and topic; AWS-owned keys if empty.
        sfn_log_level: ``OFF``, ``ERROR`` or ``ALL`` (execution history to CloudWatch Logs).
        sfn_tracing: X-Ray tracing of the workflows.
        retain: keep tables on stack deletion (and deletion protection on).
        eks_oidc_provider: ``oidc.eks.<region>.amazonaws.com/id/<id>`` to trust EKS
            service accounts (IRSA) besides ECS tasks; ``namespace`` is theirs.
        tags: extra tags for every resource.
    """

    prefix: str = "remitflow"
    kms_key_arn: str = ""
    sfn_log_level: str = "ERROR"
    sfn_tracing: bool = False
    retain: bool = True
    eks_oidc_provider: str = ""
    namespace: str = "remitflow"
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_context(cls, node: Any) -> StackOptions:
        def get(key: str, default: Any) -> Any:
            value = node.try_get_context(key)
            return default if value is None else value

        def flag(key: str, default: bool) -> bool:
            value = get(key, default)
            return value if isinstance(value, bool) else str(value).lower() == "true"

        tags = get("tags", {})
        return cls(prefix=str(get("prefix", "remitflow")), kms_key_arn=str(get("kms_key_arn", "")),
                   sfn_log_level=str(get("sfn_log_level", "ERROR")).upper(),
                   sfn_tracing=flag("sfn_tracing", False), retain=flag("retain", True),
                   eks_oidc_provider=str(get("eks_oidc_provider", "")),
                   namespace=str(get("namespace", "remitflow")),
                   tags=json.loads(tags) if isinstance(tags, str) else dict(tags))


class RemitflowStack(cdk.Stack):
    """Tables, queues, topic, workflows, sender identity and roles of one prefix."""

    def __init__(self, scope: Construct, construct_id: str, *, options: StackOptions,
                 settings: Settings, services: tuple[Service, ...] = SERVICES,
                 **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.options, self.settings, self.services = options, settings, services
        self.names = Names(options.prefix)
        kinds = kinds_of(services)
        cdk.Tags.of(self).add("app", "remitflow")
        cdk.Tags.of(self).add("remitflow:prefix", options.prefix)
        for key, value in options.tags.items():
            cdk.Tags.of(self).add(key, value)
        self.key = (kms.Key.from_key_arn(self, "Key", options.kms_key_arn)
                    if options.kms_key_arn else None)

        self.tables: dict[str, ddb.Table] = {}
        for kind in kinds:
            self._table(kind.names(options.prefix).table, "request_id", job=True,
                        handoff=kind.handoff is not None, ttl=EXPIRES_AT)
        resources = resources_of(services)
        for spec in resources.tables:
            self._table(self.names.name(spec.short), spec.key, job=False, ttl=spec.ttl)
        self._table(self.names.leases, LEASE_GROUP, sort=LEASE_KEY, job=False, ttl=LEASE_TTL)
        # data lifecycle: tombstones of expired jobs, and the archive
        self._table(self.names.name(TOMBSTONES), TOMBSTONE_KEY, job=False, ttl=EXPIRES_AT)
        self._table(self.names.name(SUBJECT_KEYS), SUBJECT_ID, job=False)
        archive_bucket(self, settings, retain=options.retain)

        self.queues: dict[str, sqs.Queue] = {}
        for kind in kinds:
            kn = kind.names(options.prefix)
            self._queue(kn.task_queue, settings.task.visibility_s, TASK_QUEUE_REDRIVE)
            self._queue(kn.intake_queue, settings.visibility_timeout_s)

        self.topics: dict[str, sns.Topic] = {}
        for topic in sorted({t for k in kinds for t in (k.names(options.prefix).topic,
                                                         k.names(options.prefix).subscribes) if t}):
            self.topics[topic] = sns.Topic(self, _id(topic), topic_name=topic,
                                           master_key=self.key)
            self._output(topic, self.topics[topic].topic_arn, "topic ARN")
        for kind in kinds:
            kn = kind.names(options.prefix)
            if kn.subscribes:
                self._subscribe(self.topics[kn.subscribes], self.queues[kn.intake_queue])

        self.workflow_role = self._role(
            grants.WORKFLOWS, iam.ServicePrincipal("states.amazonaws.com"),
            role_name=self.names.sfn_role, extras=self._workflow_extras())
        self.state_machines: dict[str, sfn.CfnStateMachine] = {}
        for kind in kinds:
            self._state_machine(kind)
        self._status_events()
        for drop in file_drops(settings, services):
            self._file_drop(drop)
        for owned in resources.owned:
            if not isinstance(owned, SesSending):
                raise TypeError(f"no CDK construct for the owned resource {owned!r}")
            self._ses_sending(owned)

        self.roles = {s.name: self._role(s.name, self._service_principal(s.name))
                      for s in services}
        self._output("Prefix", options.prefix, "REMITFLOW_PREFIX of every service")
        self._output("Region", self.region, "AWS_REGION of every service")
        self._output("Account", self.account, "aws.accountId of the Helm chart")

    # -- tables ---------------------------------------------------------------------------

    def _table(self, name: str, key: str, *, job: bool, handoff: bool = False,
               ttl: str | None = None, sort: str | None = None) -> None:
        encryption = (ddb.TableEncryption.CUSTOMER_MANAGED if self.key is not None
                      else ddb.TableEncryption.AWS_MANAGED)
        table = ddb.Table(
            self, _id(name), table_name=name,
            partition_key=ddb.Attribute(name=key, type=ddb.AttributeType.STRING),
            sort_key=ddb.Attribute(name=sort, type=ddb.AttributeType.STRING) if sort else None,
            billing_mode=ddb.BillingMode.PAY_PER_REQUEST,
            stream=ddb.StreamViewType.NEW_AND_OLD_IMAGES if job else None,
            point_in_time_recovery_specification=ddb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            deletion_protection=self.options.retain,
            removal_policy=(cdk.RemovalPolicy.RETAIN if self.options.retain
                            else cdk.RemovalPolicy.DESTROY),
            encryption=encryption, encryption_key=self.key, time_to_live_attribute=ttl)
        if job:
            for index, pk, sk, sk_type in JOB_INDEXES:
                # Sparse: an item is in the index only while it carries ``pk``. Keys
                # only; CloudFormation cannot change a projection in place either
                # (docs/indexes.md: rename the index or remove and re-add it).
                table.add_global_secondary_index(
                    index_name=index,
                    partition_key=ddb.Attribute(name=pk, type=ddb.AttributeType.STRING),
                    sort_key=ddb.Attribute(name=sk, type=ddb.AttributeType(
                        "NUMBER" if sk_type == "N" else "STRING")),
                    projection_type=ddb.ProjectionType(
                        JOB_INDEX_PROJECTION["ProjectionType"]),
                    non_key_attributes=JOB_INDEX_PROJECTION.get("NonKeyAttributes"))
            for index, pk, sk, _ in HANDOFF_INDEXES if handoff else ():
                # Every succeeded job of a publishing kind, keys only (hand-off check).
                table.add_global_secondary_index(
                    index_name=index,
                    partition_key=ddb.Attribute(name=pk, type=ddb.AttributeType.STRING),
                    sort_key=ddb.Attribute(name=sk, type=ddb.AttributeType.STRING),
                    projection_type=ddb.ProjectionType.KEYS_ONLY)
            self._output(f"{name}-stream", table.table_stream_arn or "", "stream ARN")
        self.tables[name] = table
        self._output(name, table.table_name, "table name")

    # -- queues and topic -----------------------------------------------------------------

    def _queue(self, name: str, visibility_s: int, max_receive: int = EVENT_QUEUE_REDRIVE
               ) -> None:
        dlq = sqs.Queue(self, _id(Names.dlq(name)), queue_name=Names.dlq(name),
                        retention_period=RETENTION, encryption=sqs.QueueEncryption.SQS_MANAGED,
                        enforce_ssl=True)
        queue = sqs.Queue(
            self, _id(name), queue_name=name, retention_period=RETENTION,
            visibility_timeout=cdk.Duration.seconds(visibility_s),
            encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=max_receive))
        self.queues[name], self.queues[Names.dlq(name)] = queue, dlq
        self._output(name, queue.queue_url, "queue URL")
        self._output(Names.dlq(name), dlq.queue_url, "dead-letter queue URL")

    def _subscribe(self, topic: sns.Topic, queue: sqs.Queue) -> None:
        """Raw delivery, and a queue policy that admits this topic only (as bootstrap)."""
        sns.Subscription(self, f"{_id(queue.node.id)}Subscription", topic=topic,
                         endpoint=queue.queue_arn, protocol=sns.SubscriptionProtocol.SQS,
                         raw_message_delivery=True)
        queue.add_to_resource_policy(iam.PolicyStatement(
            sid="topic-to-queue", actions=["sqs:SendMessage"], resources=[queue.queue_arn],
            principals=[iam.ServicePrincipal("sns.amazonaws.com")],
            conditions={"ArnEquals": {"aws:SourceArn": topic.topic_arn}}))

    # -- workflows ------------------------------------------------------------------------

    def _state_machine(self, kind: Any) -> None:
        kn = kind.names(self.options.prefix)
        s = self.settings
        subs: dict[str, Any] = {"HeartbeatSeconds": s.task.heartbeat_timeout_s,
                                "TaskTimeoutSeconds": s.task.timeout_s,
                                "WorkflowTimeoutSeconds": s.task.workflow_timeout_s,
                                "TasksQueueUrl": self.queues[kn.task_queue].queue_url,
                                "JobTable": self.tables[kn.table].table_name}
        if kn.topic:
            subs["TopicArn"] = self.topics[kn.topic].topic_arn
        extra: dict[str, Any] = {}
        level = self.options.sfn_log_level
        if level != "OFF":
            group = logs.LogGroup(self, f"{_id(kn.state_machine)}Logs",
                                  log_group_name=f"/aws/vendedlogs/states/{kn.state_machine}",
                                  retention=logs.RetentionDays.ONE_MONTH,
                                  removal_policy=cdk.RemovalPolicy.DESTROY)
            extra["logging_configuration"] = sfn.CfnStateMachine.LoggingConfigurationProperty(
                level=level, include_execution_data=False, destinations=[
                    sfn.CfnStateMachine.LogDestinationProperty(
                        cloud_watch_logs_log_group=sfn.CfnStateMachine
                        .CloudWatchLogsLogGroupProperty(log_group_arn=group.log_group_arn))])
        if self.options.sfn_tracing:
            extra["tracing_configuration"] = sfn.CfnStateMachine.TracingConfigurationProperty(
                enabled=True)
        machine = sfn.CfnStateMachine(
            self, _id(kn.state_machine), state_machine_name=kn.state_machine,
            state_machine_type="STANDARD", role_arn=self.workflow_role.role_arn,
            definition_string=load_definition(kind.definition, subs), **extra)
        # E1029 flags "${...}" outside Fn::Sub; here it is prose in the ASL's Comment
        # ("${Name} placeholders are filled by ..."), not a parameter: nothing to resolve.
        machine.add_metadata("cfn-lint", {"config": {"ignore_checks": ["E1029"]}})
        self.state_machines[kn.state_machine] = machine
        # Ref is the ARN (and moto's CloudFormation knows no GetAtt Arn here).
        self._output(kn.state_machine, machine.ref, "state machine ARN")

    def _file_drop(self, drop: FileDrop) -> None:
        """Bucket whose new objects are announced on a queue (as bootstrap's file drops).

        The notification is the bucket's own ``NotificationConfiguration`` (plain
        CloudFormation), not CDK's ``add_event_notification``, which needs a Lambda
        custom resource; the queue policy must exist first, hence the dependency.
        """
        prefix = self.options.prefix
        queue_name, bucket_name = drop.queue_name(prefix), drop.bucket_name(prefix)
        self._queue(queue_name, self.settings.visibility_timeout_s)
        queue = self.queues[queue_name]
        bucket_arn = f"arn:{self.partition}:s3:::{bucket_name}"
        queue.add_to_resource_policy(iam.PolicyStatement(
            sid="bucket-to-queue", actions=["sqs:SendMessage"], resources=[queue.queue_arn],
            principals=[iam.ServicePrincipal("s3.amazonaws.com")],
            conditions={"ArnEquals": {"aws:SourceArn": bucket_arn}}))
        bucket = s3.CfnBucket(
            self, _id(bucket_name) + "Bucket", bucket_name=bucket_name, **private_versioned(),
            notification_configuration=s3.CfnBucket.NotificationConfigurationProperty(
                queue_configurations=[s3.CfnBucket.QueueConfigurationProperty(
                    event="s3:ObjectCreated:*", queue=queue.queue_arn)]))
        policy = queue.node.try_find_child("Policy")
        if policy is not None:
            bucket.node.add_dependency(policy)
        if self.options.retain:
            bucket.apply_removal_policy(cdk.RemovalPolicy.RETAIN)
        self._output(f"{bucket_name}-bucket", bucket_name, "partner files bucket")

    def _status_events(self) -> None:
        """Executions that ended badly → the execution-status queue (as bootstrap does)."""
        name = self.names.execution_status
        self._queue(name, self.settings.visibility_timeout_s, EVENT_QUEUE_REDRIVE)
        queue = self.queues[name]
        rule = events.CfnRule(
            self, _id(name) + "Rule", name=name, state="ENABLED",
            description="remitflow: executions that ended without their own status write",
            event_pattern={"source": ["aws.states"], "detail-type": [STATUS_DETAIL_TYPE],
                           "detail": {"status": list(STATUS_SETTLING),
                                      "stateMachineArn": [m.ref for m in
                                                          self.state_machines.values()]}},
            targets=[events.CfnRule.TargetProperty(id="status-queue", arn=queue.queue_arn)])
        queue.add_to_resource_policy(iam.PolicyStatement(
            sid="rule-to-queue", actions=["sqs:SendMessage"], resources=[queue.queue_arn],
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            conditions={"ArnEquals": {"aws:SourceArn": rule.attr_arn}}))

    def _ses_sending(self, owned: SesSending) -> None:
        """Sender identity; configuration set → SNS topic → queue (with DLQ), as
        bootstrap does (``services/notification/resources.py``)."""
        self.identity = ses.EmailIdentity(
            self, "SenderIdentity", identity=ses.Identity.email(
                narrow(self.settings, NotificationSettings).sender_email))
        name = owned.name(self.options.prefix)
        self._queue(name, self.settings.visibility_timeout_s, EVENT_QUEUE_REDRIVE)
        topic = sns.Topic(self, _id(name) + "Topic", topic_name=name, master_key=self.key)
        topic.add_to_resource_policy(iam.PolicyStatement(
            sid="ses-events", actions=["sns:Publish"], resources=[topic.topic_arn],
            principals=[iam.ServicePrincipal("ses.amazonaws.com")],
            conditions={"StringEquals": {"AWS:SourceAccount": self.account}}))
        self.topics[name] = topic
        self._output(name + "-topic", topic.topic_arn, "topic ARN")
        self._subscribe(topic, self.queues[name])
        config = ses.CfnConfigurationSet(self, _id(name) + "Set", name=name)
        destination = ses.CfnConfigurationSetEventDestination(
            self, _id(name) + "Destination", configuration_set_name=name,
            event_destination=ses.CfnConfigurationSetEventDestination.EventDestinationProperty(
                name=f"{name}-sns", enabled=True, matching_event_types=list(owned.event_types),
                sns_destination=ses.CfnConfigurationSetEventDestination
                .SnsDestinationProperty(topic_arn=topic.topic_arn)))
        destination.add_dependency(config)

    # -- roles ----------------------------------------------------------------------------

    def _service_principal(self, service: str) -> iam.IPrincipal:
        ecs = iam.ServicePrincipal("ecs-tasks.amazonaws.com")
        provider = self.options.eks_oidc_provider
        if not provider:
            return ecs
        account = "system:serviceaccount"
        irsa = iam.FederatedPrincipal(
            f"arn:{self.partition}:iam::{self.account}:oidc-provider/{provider}",
            conditions={"StringEquals": {
                f"{provider}:sub": f"{account}:{self.options.namespace}:remitflow-{service}",
                f"{provider}:aud": "sts.amazonaws.com"}},
            assume_role_action="sts:AssumeRoleWithWebIdentity")
        return iam.CompositePrincipal(ecs, irsa)

    def _role(self, service: str, principal: iam.IPrincipal, *, role_name: str | None = None,
              extras: list[iam.PolicyStatement] | None = None) -> iam.Role:
        """``tools/iam.py``'s grants for ``service`` (plus ``extras``), as the role
        ``<prefix>-<service>`` (deploy/ecs/*.json, the chart docs) unless ``role_name``."""
        doc = grants.policy(service, self.options.prefix, partition=self.partition,
                            region=self.region, account=self.account, services=self.services)
        statements = [iam.PolicyStatement.from_json(st) for st in doc["Statement"]]
        if self.key is not None:
            statements.append(iam.PolicyStatement(
                sid="CustomerManagedKey", resources=[self.key.key_arn],
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*",
                         "kms:DescribeKey"]))
        role = iam.Role(self, f"{service.capitalize()}Role",
                        role_name=role_name or self.names.name(service), assumed_by=principal,
                        inline_policies={"remitflow": iam.PolicyDocument(
                            statements=[*statements, *(extras or [])])})
        self._output(f"{service}-role", role.role_arn, "IAM role ARN")
        return role

    def _workflow_extras(self) -> list[iam.PolicyStatement]:
        out = []
        if self.options.sfn_log_level != "OFF":
            # CloudWatch Logs delivery APIs take no resource: AWS requires "*".
            out.append(iam.PolicyStatement(sid="LogDelivery", resources=["*"], actions=[
                "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery",
                "logs:DeleteLogDelivery", "logs:ListLogDeliveries",
                "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
                "logs:DescribeLogGroups"]))
        if self.options.sfn_tracing:
            out.append(iam.PolicyStatement(sid="Tracing", resources=["*"], actions=[
                "xray:PutTraceSegments", "xray:PutTelemetryRecords",
                "xray:GetSamplingRules", "xray:GetSamplingTargets"]))
        return out

    def _output(self, name: str, value: str, what: str) -> None:
        cdk.CfnOutput(self, _id(name.removeprefix(f"{self.options.prefix}-")) + "Out",
                      value=value, description=f"{name}: {what}")


def _id(name: str) -> str:
    """A construct id from a resource name (``a-b-c`` → ``ABC``)."""
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
