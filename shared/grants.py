"""IAM grants as data: what a service does, on which (symbolic) resources.

A service declares its grants beside its code (:attr:`shared.service.Service.grants`);
``tools/iam.py`` renders them into the checked-in policies (``deploy/iam/``) and the
CDK roles, and ``tests/deploy/test_iam_operations.py`` checks every AWS call a running
service makes against them. What every job-kind service does is
:func:`job_kind_grants`, so a service lists only what it does beyond the pattern.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.aws.names import Names
from shared.files.drop import FileDrop
from shared.pipeline.kind import JobKind
from shared.pipeline.lifecycle import TOMBSTONES
from shared.provision.resources import NO_RESOURCES, Resources

# The prefix the checked-in policies are rendered with (a deploy-time placeholder).
PLACEHOLDER_PREFIX = "${REMITFLOW_PREFIX}"


@dataclass(frozen=True)
class Res:
    """A symbolic resource: ``kind`` is queue, table, index, stream, state_machine,
    executions, identity or any; ``name`` is the full resource name (prefix included)."""

    kind: str
    name: str = ""


@dataclass(frozen=True)
class Grant:
    sid: str
    actions: tuple[str, ...]
    resources: tuple[Res, ...]


@dataclass(frozen=True)
class GrantScope:
    """What a service's grants are resolved against: the prefix and every job kind
    of the deployment (a service operating on all kinds, like the sweeper, reads them)."""

    prefix: str
    kinds: tuple[JobKind, ...]
    #: every service's declared resources, combined (file drops, tables, owned queues)
    resources: Resources = NO_RESOURCES

    @property
    def drops(self) -> tuple[FileDrop, ...]:
        """Every file drop of the deployment (their queues' names; the bucket may be
        a setting)."""
        return self.resources.drops

    @property
    def names(self) -> Names:
        return Names(self.prefix)

    @property
    def placeholders(self) -> bool:
        """Rendering the checked-in policies (names are placeholders, not values)."""
        return self.prefix == PLACEHOLDER_PREFIX


ANY = (Res("any"),)
CONSUME = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
           "sqs:GetQueueUrl", "sqs:GetQueueAttributes")
JOB_TABLE = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query",
             "dynamodb:DescribeTable")
# The sparse indexes hold keys only: a page of them is read back with BatchGetItem
# (shared/pipeline/indexes.py) by whoever lists an index: the sweeper, and the
# notification service re-driving the jobs parked for an endpoint.
READ_INDEXED_JOBS = ("dynamodb:BatchGetItem",)
LEADER_LEASE = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                "dynamodb:DeleteItem")
# The stream consumer also queries its shard leases (shared/stream/leases.py).
SHARD_LEASES = (*LEADER_LEASE, "dynamodb:Query")
READ_REFERENCE = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")


def table(name: str) -> tuple[Res, Res]:
    """A table and its indexes."""
    return Res("table", name), Res("index", name)


def job_kind_grants(kind: JobKind, prefix: str) -> list[Grant]:
    """What every job-kind service does: intake, job table + stream, leases, workflows."""
    kn = kind.names(prefix)
    return [
        Grant("ConsumeQueues", CONSUME,
              (Res("queue", kn.intake_queue), Res("queue", kn.task_queue))),
        # invalid intake messages, and task-queue messages that are not tasks
        Grant("QuarantineToDlq", ("sqs:SendMessage", "sqs:GetQueueUrl"),
              (Res("queue", Names.dlq(kn.intake_queue)), Res("queue", Names.dlq(kn.task_queue)))),
        Grant("DeadLetterDepth", ("sqs:GetQueueUrl", "sqs:GetQueueAttributes"),
              (Res("queue", Names.dlq(kn.intake_queue)), Res("queue", Names.dlq(kn.task_queue)))),
        Grant("JobTable", JOB_TABLE, table(kn.table)),
        # intake: an expired job's tombstone (shared/pipeline/lifecycle.py)
        Grant("ReadTombstones", ("dynamodb:GetItem",),
              (Res("table", Names(prefix).name(TOMBSTONES)),)),
        Grant("JobTableStream", ("dynamodb:DescribeStream", "dynamodb:GetRecords",
                                 "dynamodb:GetShardIterator"), (Res("stream", kn.table),)),
        Grant("ListStreams", ("dynamodb:ListStreams",), ANY),
        Grant("Leases", SHARD_LEASES, (Res("table", Names(prefix).leases),)),
        Grant("StartWorkflows", ("states:StartExecution",),
              (Res("state_machine", kn.state_machine),)),
        Grant("DescribeWorkflows", ("states:DescribeExecution",),
              (Res("executions", kn.state_machine),)),
        Grant("ResolveStateMachines", ("states:ListStateMachines",), ANY),
        # Task tokens name no resource: AWS evaluates these actions against "*".
        Grant("AnswerWorkflowTasks", ("states:SendTaskSuccess", "states:SendTaskFailure",
                                      "states:SendTaskHeartbeat"), ANY),
    ]
