"""Which AWS operations each service performs, on which resources: rendered from the
services' declarations.

Each service declares its grants as data beside its code (``services/<name>/
declaration.py``, :class:`shared.grants.Grant`); the pattern's own grants for a job
kind are :func:`shared.grants.job_kind_grants`. The CDK roles (``deploy/cdk``) and the
checked-in policies (``deploy/iam/<service>.json``) are both rendered here from the
list of services (``tools/stack.py``); ``tests/deploy/test_iam_operations.py`` runs the
pipeline and checks every ``remitflow_aws_requests_total`` label a service reports
against what its policy allows, so a call added to the code without a grant fails
a test here instead of ``AccessDenied`` on AWS; ``tests/deploy/test_iam_enforced.py`` runs
the services with exactly these policies against an emulator that enforces IAM.

Resources are symbolic (:class:`Res`) and resolved per prefix from the same job kind
descriptors the services use (``tools/stack.py``), so a renamed queue moves its grant.

Regenerate the JSON files with ``python -m tools.iam --write``; ``--check`` fails
when they are stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from shared.grants import PLACEHOLDER_PREFIX, Grant, GrantScope, Res
from shared.service import Service
from tools.stack import SERVICES, kinds_of, resources_of

IAM_DIR = Path(__file__).resolve().parent.parent / "deploy" / "iam"

# botocore service ids (the ``service`` label) to IAM action prefixes.
IAM_PREFIX = {"sqs": "sqs", "dynamodb": "dynamodb", "dynamodb-streams": "dynamodb",
              "sfn": "states", "sns": "sns", "ses": "ses", "iam": "iam", "s3": "s3"}
# API operations whose IAM action has another name.
IAM_ACTION = {"DeleteMessageBatch": "DeleteMessage", "SendMessageBatch": "SendMessage",
              "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
              "HeadObject": "GetObject", "ListObjectsV2": "ListBucket"}

WORKFLOWS = "workflows"
"""The Step Functions workflows' role: not a service, but a policy like one."""


def workflow_grants(scope: GrantScope) -> list[Grant]:
    """What the workflows do themselves: send tasks, write a job's final status."""
    names = [k.names(scope.prefix) for k in scope.kinds]
    return [
        Grant("SendTasks", ("sqs:SendMessage",),
              tuple(Res("queue", kn.task_queue) for kn in names)),
        Grant("UpdateJobs", ("dynamodb:UpdateItem",),
              tuple(Res("table", kn.table) for kn in names)),
    ]


def roles(services: Sequence[Service] = SERVICES
          ) -> dict[str, Callable[[GrantScope], Sequence[Grant]]]:
    """Role name → its grants (``scope → grants``): every service, then the workflows."""
    return {**{s.name: s.all_grants for s in services}, WORKFLOWS: workflow_grants}


def service_grants(service: str, prefix: str,
                   services: Sequence[Service] = SERVICES) -> list[Grant]:
    """The grants of one role (a declared service's name, or ``workflows``)."""
    by_role = roles(services)
    if service not in by_role:
        raise ValueError(f"unknown service {service!r}: one of {', '.join(by_role)}")
    return list(by_role[service](GrantScope(prefix, kinds_of(services),
                                            resources_of(services))))


def allowed_actions(service: str, services: Sequence[Service] = SERVICES) -> set[str]:
    """IAM actions (``dynamodb:Scan``) a service's policy allows, on any resource."""
    return {a for g in service_grants(service, "p", services) for a in g.actions}


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
    if res.kind == "bucket":
        return f"arn:{partition}:s3:::{res.name}"
    if res.kind == "objects":
        return f"arn:{partition}:s3:::{res.name}/*"
    if res.kind == "configuration_set":
        return base("ses") + f"configuration-set/{res.name}"
    raise ValueError(f"unknown resource kind {res.kind!r}")


def policy(service: str, prefix: str, *, partition: str = "aws", region: str = "${AWS_REGION}",
           account: str = "${AWS_ACCOUNT_ID}", services: Sequence[Service] = SERVICES
           ) -> dict[str, Any]:
    """An IAM policy document for ``service`` (placeholders unless real values are given)."""
    statements: list[dict[str, Any]] = []
    for g in service_grants(service, prefix, services):
        arns = [arn(r, partition=partition, region=region, account=account) for r in g.resources]
        statements.append({"Sid": g.sid, "Effect": "Allow", "Action": list(g.actions),
                           "Resource": arns[0] if arns == ["*"] else arns})
    return {"Version": "2012-10-17", "Statement": statements}


def policy_files(services: Sequence[Service] = SERVICES,
                 directory: Path = IAM_DIR) -> dict[str, Path]:
    """Role → its checked-in policy file (``<service>.json``)."""
    return {**{s.name: directory / f"{s.name}.json" for s in services},
            WORKFLOWS: directory / "stepfunctions-execution.json"}


def rendered(services: Sequence[Service] = SERVICES,
             directory: Path = IAM_DIR) -> dict[Path, str]:
    return {path: json.dumps(policy(role, PLACEHOLDER_PREFIX, services=services),
                             indent=2) + "\n"
            for role, path in policy_files(services, directory).items()}


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
        print(f"wrote {len(policy_files())} policies to {IAM_DIR}")
        return 0
    for path in stale:
        print(f"stale: {path} (run: python -m tools.iam --write)", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
