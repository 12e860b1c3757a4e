"""Adding a service is one folder and one entry in ``tools/stack.py``'s ``SERVICES``.

A copy of the tree gets the fixture folder ``tests/fixtures/audit_service`` as
``services/audit`` (one ``Service`` declaration, one job kind, one handler) and one
line in the list of services; nothing else is edited. Then, in that copy, as a user
would run them: bootstrap creates the new kind's resources in the emulator, the IAM
policies are rendered with a policy for it, the CDK app synthesises its table, queues,
workflow and role, the dev runner's service list includes it, and ``remitflow run
audit`` takes a message through its own workflow to the success state.

It takes one to two minutes (a CDK synth, a bootstrap and a service start, each a fresh
process on a copy of the tree): the price of showing it on the real entry points.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

from tests.cdk_support import synth
from tools.procs import free_port, stop

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "audit_service"
LIST_LINE = ("SERVICES: tuple[Service, ...] = (ENRICHMENT_SERVICE, NOTIFICATION_SERVICE, "
             "SWEEPER_SERVICE)")
IMPORT_AFTER = "from services.sweeper.declaration import SERVICE as SWEEPER_SERVICE\n"
IGNORE = shutil.ignore_patterns("__pycache__", "cdk.out", "*.pyc")


def add_service(tmp_path: Path) -> Path:
    """A copy of the tree with the fixture as ``services/audit``, listed once."""
    repo = tmp_path / "repo"
    for part in ("shared", "services", "tools", "deploy"):
        shutil.copytree(ROOT / part, repo / part, ignore=IGNORE)
    shutil.copytree(FIXTURE, repo / "services" / "audit", ignore=IGNORE)
    stack = repo / "tools" / "stack.py"
    text = stack.read_text()
    assert LIST_LINE in text and IMPORT_AFTER in text, "tools/stack.py's list has moved"
    stack.write_text(text.replace(IMPORT_AFTER, IMPORT_AFTER + "from services.audit.declaration "
                                  "import SERVICE as AUDIT_SERVICE\n")
                     .replace(LIST_LINE, LIST_LINE[:-1] + ", AUDIT_SERVICE)"))
    return repo


def run(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=repo, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(repo),
                                            **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_a_fourth_service_needs_one_folder_and_one_list_entry(emulator: str,
                                                               tmp_path: Path) -> None:
    repo = add_service(tmp_path)
    prefix = "svc" + uuid.uuid4().hex[:8]

    # the dev runner (and remitflow run, the bench, the healthcheck) see it
    ports = json.loads(run(repo, "-c", "import json; from tools.dev import Supervisor; "
                                       "print(json.dumps(Supervisor({}).ports))"))
    assert ports == {"enrichment": 8081, "notification": 8082, "sweeper": 8083, "audit": 8084}
    assert json.loads(run(repo, "-m", "tools.stack", "--ports"))["audit"] == 8084

    # IAM: a policy of its own; the workflows' and the sweeper's cover its kind too
    run(repo, "-m", "tools.iam", "--write")
    iam = repo / "deploy" / "iam"
    audit = json.loads((iam / "audit.json").read_text())
    sids = [st["Sid"] for st in audit["Statement"]]
    assert sids[0] == "ConsumeQueues" and sids[-1] == "ReadOwnJobs", sids
    consume = audit["Statement"][0]["Resource"]
    assert consume == ["arn:aws:sqs:${AWS_REGION}:${AWS_ACCOUNT_ID}:"
                       "${REMITFLOW_PREFIX}-audit-events",
                       "arn:aws:sqs:${AWS_REGION}:${AWS_ACCOUNT_ID}:"
                       "${REMITFLOW_PREFIX}-audit-tasks"]
    for unchanged in ("enrichment.json", "notification.json"):
        assert (iam / unchanged).read_text() == (ROOT / "deploy" / "iam" / unchanged).read_text()
    for grown in ("sweeper.json", "stepfunctions-execution.json"):
        assert "${REMITFLOW_PREFIX}-audits" in (iam / grown).read_text(), grown
        assert "${REMITFLOW_PREFIX}-audits" not in (ROOT / "deploy" / "iam" / grown).read_text()

    # bootstrap creates its table, queues (with DLQs) and workflow
    run(repo, "-m", "tools.cli", "bootstrap", env={"REMITFLOW_PREFIX": prefix})
    kw = {"endpoint_url": emulator, "region_name": "us-east-1",
          "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    ddb, sqs, sfn = (boto3.client(n, **kw) for n in ("dynamodb", "sqs", "stepfunctions"))
    table = ddb.describe_table(TableName=f"{prefix}-audits")["Table"]
    assert table["StreamSpecification"]["StreamEnabled"] is True
    for queue in ("audit-events", "audit-tasks"):
        for name in (f"{prefix}-{queue}", f"{prefix}-{queue}-dlq"):
            assert sqs.get_queue_url(QueueName=name)["QueueUrl"]
    machines = {m["name"] for page in sfn.get_paginator("list_state_machines").paginate()
                for m in page["stateMachines"]}
    assert f"{prefix}-audit" in machines

    # remitflow run audit: what the dev runner starts; a message reaches its success state
    port = free_port()
    log = (tmp_path / "audit.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "run", "audit"], cwd=repo, stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(repo), "REMITFLOW_PREFIX": prefix,
             "REMITFLOW_HTTP_PORT": str(port), "REMITFLOW_HTTP_HOST": "127.0.0.1",
             "REMITFLOW_RECEIVE_WAIT_S": "1", "REMITFLOW_STREAM_IDLE_MAX_S": "1"})
    try:
        request_id = "AUDIT-" + uuid.uuid4().hex[:8]
        url = sqs.get_queue_url(QueueName=f"{prefix}-audit-events")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"request_id": request_id}))
        item = _settled(ddb, f"{prefix}-audits", request_id, proc)
        assert item["status"]["S"] == "SENT", (tmp_path / "audit.log").read_text()[-3000:]
        assert item["delivery_id"]["S"] == f"audited-{request_id}"
    finally:
        stop(proc)
        log.close()

    # the CDK app synthesises its resources and its role
    template = synth(tmp_path / "cdk.out", {"prefix": prefix, "retain": False},
                     app=repo / "deploy" / "cdk" / "app.py")
    props = [r.get("Properties", {}) for r in template["Resources"].values()]
    assert f"{prefix}-audits" in {p.get("TableName") for p in props}
    queues = {p.get("QueueName") for p in props}
    assert {f"{prefix}-audit-events", f"{prefix}-audit-tasks-dlq"} <= queues
    assert f"{prefix}-audit" in {p.get("StateMachineName") for p in props}
    (role,) = [p for p in props if p.get("RoleName") == f"{prefix}-audit"]
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert [st["Sid"] for st in statements] == sids


def _settled(ddb: Any, table: str, request_id: str,
             proc: subprocess.Popen[bytes]) -> dict[str, dict[str, str]]:
    """The job once it reached a final state (the service must stay up meanwhile)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the audit service exited"
        found: dict[str, dict[str, str]] | None = ddb.get_item(
            TableName=table, Key={"request_id": {"S": request_id}},
            ConsistentRead=True).get("Item")
        if found and found["status"]["S"] in ("SENT", "FAILED", "REJECTED"):
            return found
        time.sleep(0.5)
    raise AssertionError(f"{request_id} not settled in {table}")
