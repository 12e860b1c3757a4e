"""Which AWS operations each service performs, on which resources: the one source of truth.

The CDK roles (``deploy/cdk``) and the checked-in policies (``deploy/iam/<service>.json``)
are both rendered from :data:`GRANTS`; ``tests/test_iam_operations.py`` runs the
pipeline and checks every ``remitflow_aws_requests_total`` label a service reports
against what its policy allows, so a call added to the code without a grant fails
a test here instead of ``AccessDenied`` on AWS (emulators do not enforce IAM).

Resources are symbolic (:class:`Res`) and resolved per prefix from the same job kind
descriptors the services use (``tools/stack.py``), so a renamed queue moves its grant.

Regenerate the JSON files with ``python -m tools.iam --write``; ``--check`` fails
when they are stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from services.enrichment.kind import PARTNER_FILES
from shared.aws.names import Names
from shared.domain.directory import INVOICES, PAYEES
from shared.files.progress import FILE_RECORDS
from shared.pipeline.kind import JobKind
from tools.stack import KINDS

IAM_DIR = Path(__file__).resolve().parent.parent / "deploy" / "iam"
PLACEHOLDER_PREFIX = "${REMITFLOW_PREFIX}"
BUCKET_PLACEHOLDER = "${REMITFLOW_PARTNER_FILES_BUCKET}"

# botocore service ids (the ``service`` label) to IAM action prefixes.
IAM_PREFIX = {"sqs": "sqs", "dynamodb": "dynamodb", "dynamodb-streams": "dynamodb",
              "sfn": "states", "sns": "sns", "ses": "ses", "iam": "iam", "s3": "s3"}
# API operations whose IAM action has another name.
IAM_ACTION = {"DeleteMessageBatch": "DeleteMessage", "SendMessageBatch": "SendMessage",
              "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


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


ANY = (Res("any"),)
_CONSUME = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
            "sqs:GetQueueUrl", "sqs:GetQueueAttributes")
_JOB_TABLE = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query",
              "dynamodb:DescribeTable")
# The sparse indexes hold keys only: a page of them is read back with BatchGetItem
# (shared/pipeline/indexes.py) by whoever lists an index: the sweeper, and the
# notification service re-driving the jobs parked for an endpoint.
_READ_INDEXED_JOBS = ("dynamodb:BatchGetItem",)
_LEADER_LEASE = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                 "dynamodb:DeleteItem")
# The stream consumer also scans its shard leases (shared/stream/leases.py).
_SHARD_LEASES = (*_LEADER_LEASE, "dynamodb:Scan")
_READ_REFERENCE = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")


def _table(name: str) -> tuple[Res, Res]:
    return Res("table", name), Res("index", name)


def job_kind_grants(kind: JobKind, prefix: str) -> list[Grant]:
    """What every job-kind service does: intake, job table + stream, leases, workflows."""
    kn = kind.names(prefix)
    return [
        Grant("ConsumeQueues", _CONSUME,
              (Res("queue", kn.intake_queue), Res("queue", kn.task_queue))),
        Grant("QuarantineToDlq", ("sqs:SendMessage", "sqs:GetQueueUrl"),
              (Res("queue", Names.dlq(kn.intake_queue)),)),
        Grant("DeadLetterDepth", ("sqs:GetQueueUrl", "sqs:GetQueueAttributes"),
              (Res("queue", Names.dlq(kn.intake_queue)), Res("queue", Names.dlq(kn.task_queue)))),
        Grant("JobTable", _JOB_TABLE, _table(kn.table)),
        Grant("JobTableStream", ("dynamodb:DescribeStream", "dynamodb:GetRecords",
                                 "dynamodb:GetShardIterator"), (Res("stream", kn.table),)),
        Grant("ListStreams", ("dynamodb:ListStreams",), ANY),
        Grant("Leases", _SHARD_LEASES, (Res("table", Names(prefix).leases),)),
        Grant("StartWorkflows", ("states:StartExecution",),
              (Res("state_machine", kn.state_machine),)),
        Grant("DescribeWorkflows", ("states:DescribeExecution",),
              (Res("executions", kn.state_machine),)),
        Grant("ResolveStateMachines", ("states:ListStateMachines",), ANY),
        # Task tokens name no resource: AWS evaluates these actions against "*".
        Grant("AnswerWorkflowTasks", ("states:SendTaskSuccess", "states:SendTaskFailure",
                                      "states:SendTaskHeartbeat"), ANY),
    ]


def _ses_sets(kind: JobKind, n: Names) -> tuple[Res, ...]:
    """Sending through a configuration set needs ses:SendEmail on the set too."""
    return (Res("configuration_set", n.name(kind.ses_events)),) if kind.ses_events else ()


def _kind(name: str) -> JobKind:
    return next(k for k in KINDS if k.name == name)


def service_grants(service: str, prefix: str) -> list[Grant]:
    """The grants of one service (``enrichment``, ``notification``, ``sweeper``, ``workflows``)."""
    n = Names(prefix)
    if service == "enrichment":
        drop = replace(PARTNER_FILES, bucket=BUCKET_PLACEHOLDER
                       if prefix == PLACEHOLDER_PREFIX else None)
        queue = drop.queue_name(prefix)
        kn = _kind("enrichment").names(prefix)
        return [*job_kind_grants(_kind("enrichment"), prefix),
                Grant("ReadReferenceData", _READ_REFERENCE,
                      (*_table(n.name(PAYEES)), *_table(n.name(INVOICES)))),
                # the task worker publishes the advice (services/enrichment/handler.py)
                Grant("PublishEnriched", ("sns:Publish",),
                      tuple(Res("topic", t) for t in (kn.topic,) if t)),
                # bank files (services/enrichment/bankfiles/worker.py; docs/bankfiles.md)
                Grant("ConsumePartnerFiles", _CONSUME, (Res("queue", queue),)),
                Grant("ReportBadFiles", ("sqs:SendMessage", "sqs:GetQueueUrl"),
                      (Res("queue", Names.dlq(queue)),)),
                Grant("FileRecords", ("dynamodb:GetItem", "dynamodb:UpdateItem"),
                      (Res("table", n.name(FILE_RECORDS.short)),)),
                Grant("ReadAndTagPartnerFiles",
                      ("s3:GetObject", "s3:GetObjectTagging", "s3:PutObjectTagging",
                       "s3:DeleteObjectTagging"),
                      (Res("objects", drop.bucket_name(prefix)),))]
    if service == "notification":
        kind = _kind("notification")
        return [*job_kind_grants(kind, prefix),
                Grant("ReadReferenceData", _READ_REFERENCE, _table(n.name(PAYEES))),
                Grant("ReadIndexedJobs", _READ_INDEXED_JOBS,
                      (Res("table", kind.names(prefix).table),)),
                # webhook endpoint health (services/notification/endpoints.py)
                Grant("EndpointHealth", ("dynamodb:GetItem", "dynamodb:UpdateItem",
                                         "dynamodb:Scan"),
                      tuple(Res("table", n.name(t.short)) for t in kind.extra_tables)),
                Grant("SendEmail", ("ses:SendEmail", "ses:SendRawEmail"),
                      (Res("identity"), *_ses_sets(kind, n))),
                # SES sending events (services/notification/ses_events.py)
                *([Grant("ConsumeSesEvents", _CONSUME,
                         (Res("queue", n.name(kind.ses_events)),)),
                   Grant("DeadLetterSesEvents", ("sqs:SendMessage",),
                         (Res("queue", Names.dlq(n.name(kind.ses_events))),))]
                  if kind.ses_events else [])]
    if service == "sweeper":
        names = [k.names(prefix) for k in KINDS]
        queues = [q for kn in names for base in (kn.intake_queue, kn.task_queue)
                  for q in (base, Names.dlq(base))]
        return [
            Grant("JobTablesAndIndexes", _JOB_TABLE,
                  tuple(r for kn in names for r in _table(kn.table))),
            Grant("ReadIndexedJobs", _READ_INDEXED_JOBS,
                  tuple(Res("table", kn.table) for kn in names)),
            Grant("Leases", _LEADER_LEASE, (Res("table", n.leases),)),
            # the console's Files page (services/sweeper/console/files.py): list file
            # records, reopen a quarantined one and put its S3 event on the drop's queue
            Grant("FileRecords", ("dynamodb:Scan", "dynamodb:GetItem", "dynamodb:UpdateItem"),
                  (Res("table", n.name(FILE_RECORDS.short)),)),
            Grant("RetryFiles", ("sqs:GetQueueUrl", "sqs:SendMessage"),
                  (Res("queue", PARTNER_FILES.queue_name(prefix)),)),
            Grant("RedriveWorkflows", ("states:StartExecution",),
                  tuple(Res("state_machine", kn.state_machine) for kn in names)),
            Grant("ReconcileWorkflows", ("states:DescribeExecution",),
                  tuple(Res("executions", kn.state_machine) for kn in names)),
            Grant("ResolveStateMachines", ("states:ListStateMachines",), ANY),
            Grant("QueueDepth", ("sqs:GetQueueUrl", "sqs:GetQueueAttributes"),
                  tuple(Res("queue", q) for q in
                        (*queues, n.execution_status, Names.dlq(n.execution_status)))),
            # the hand-off check (shared/operations/handoff.py): subscribers' jobs by key,
            # a missing one's message published again
            Grant("HandoffLookups", ("dynamodb:BatchGetItem",),
                  tuple(Res("table", k.names(prefix).table) for k in KINDS if k.subscribes)),
            Grant("HandoffRepublish", ("sns:Publish",),
                  tuple(Res("topic", kn.topic) for kn in names if kn.topic)),
            # execution status events (shared/operations/status_events.py)
            Grant("ConsumeStatusEvents", _CONSUME, (Res("queue", n.execution_status),)),
            Grant("DeadLetterStatusEvents", ("sqs:SendMessage",),
                  (Res("queue", Names.dlq(n.execution_status)),)),
        ]
    if service == "workflows":
        names = [k.names(prefix) for k in KINDS]
        return [
            Grant("SendTasks", ("sqs:SendMessage",),
                  tuple(Res("queue", kn.task_queue) for kn in names)),
            Grant("UpdateJobs", ("dynamodb:UpdateItem",),
                  tuple(Res("table", kn.table) for kn in names)),
        ]
    raise ValueError(f"unknown service {service!r}")


SERVICES = ("enrichment", "notification", "sweeper", "workflows")


def allowed_actions(service: str) -> set[str]:
    """IAM actions (``dynamodb:Scan``) a service's policy allows, on any resource."""
    return {a for g in service_grants(service, "p") for a in g.actions}


def action_of(aws_service: str, operation: str) -> str:
    """The IAM action a counted call needs: ``("dynamodb-streams", "GetRecords")`` →
    ``dynamodb:GetRecords``."""
    return f"{IAM_PREFIX.get(aws_service, aws_service)}:{IAM_ACTION.get(operation, operation)}"


def arn(res: Res, *, partition: str, region: str, account: str) -> str:
    """The ARN (pattern) of a symbolic resource."""
    def base(svc: str) -> str:
        return f"arn:{partition}:{svc}:{region}:{account}:"

    if res.kind == "any":
        return "*"
    if res.kind == "queue":
        return base("sqs") + res.name
    if res.kind == "topic":
        return base("sns") + res.name
    if res.kind == "table":
        return base("dynamodb") + f"table/{res.name}"
    if res.kind == "index":
        return base("dynamodb") + f"table/{res.name}/index/*"
    if res.kind == "stream":
        return base("dynamodb") + f"table/{res.name}/stream/*"
    if res.kind == "state_machine":
        return base("states") + f"stateMachine:{res.name}"
    if res.kind == "executions":
        return base("states") + f"execution:{res.name}:*"
    if res.kind == "identity":
        return base("ses") + "identity/*"
    if res.kind == "objects":
        return f"arn:{partition}:s3:::{res.name}/*"
    if res.kind == "configuration_set":
        return base("ses") + f"configuration-set/{res.name}"
    raise ValueError(f"unknown resource kind {res.kind!r}")


def policy(service: str, prefix: str, *, partition: str = "aws", region: str = "${AWS_REGION}",
           account: str = "${AWS_ACCOUNT_ID}") -> dict[str, Any]:
    """An IAM policy document for ``service`` (placeholders unless real values are given)."""
    statements: list[dict[str, Any]] = []
    for g in service_grants(service, prefix):
        arns = [arn(r, partition=partition, region=region, account=account) for r in g.resources]
        statements.append({"Sid": g.sid, "Effect": "Allow", "Action": list(g.actions),
                           "Resource": arns[0] if arns == ["*"] else arns})
    return {"Version": "2012-10-17", "Statement": statements}


def _file(service: str) -> Path:
    return IAM_DIR / ("stepfunctions-execution.json" if service == "workflows"
                      else f"{service}.json")


def rendered() -> dict[Path, str]:
    return {_file(s): json.dumps(policy(s, PLACEHOLDER_PREFIX), indent=2) + "\n"
            for s in SERVICES}


def policy_actions(path: Path) -> set[str]:
    """Every action an IAM policy file allows (as written, whatever generated it)."""
    doc = json.loads(path.read_text())
    out: set[str] = set()
    for stmt in doc["Statement"]:
        if stmt.get("Effect") == "Allow":
            actions = stmt["Action"]
            out.update([actions] if isinstance(actions, str) else actions)
    return out


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--write", action="store_true", help="rewrite deploy/iam/<service>.json")
    p.add_argument("--check", action="store_true", help="fail if a file is stale")
    args = p.parse_args(list(argv) if argv is not None else None)
    stale = [path for path, text in rendered().items()
             if not path.exists() or path.read_text() != text]
    if args.write:
        for path, text in rendered().items():
            path.write_text(text)
        print(f"wrote {len(SERVICES)} policies to {IAM_DIR}")
        return 0
    for path in stale:
        print(f"stale: {path} (run: python -m tools.iam --write)", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
