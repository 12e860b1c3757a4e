"""The CDK stack is what the tests run on: synthesised once per session, deployed into the
emulator through CloudFormation, a remittance run end to end on its resources, and
compared with what ``remitflow bootstrap`` creates (``deploy/cdk``, ``docs/deploy.md``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.aws.clients import AwsClients
from shared.aws.emulator import sent_emails
from shared.pipeline.jobs import JobStore
from shared.provision.bootstrap import load_reference_data
from shared.provision.primitives import HANDOFF_INDEXES, JOB_INDEXES
from shared.settings import Settings
from tests.cdk_support import COPIED, NOT_SUPPORTED, Deployed, client, deploy, synth
from tests.helpers import job_in
from tests.pipeline_procs import all_ready, remittance, services
from tools import iam
from tools.demo import reference_data
from tools.stack import KINDS, StackNames, bootstrap_stack, resources_of


@pytest.fixture(scope="session")
def stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """One synth (about 10 s of jsii/Node) and one CloudFormation stack per session."""
    prefix = "cdk" + uuid.uuid4().hex[:8]
    template = synth(Path(tmp_path_factory.mktemp("cdk.out")),
                     {"prefix": prefix, "retain": False, "stack_name": f"{prefix}-stack",
                      "tags": {"team": "payments"}})
    yield deploy(emulator, f"{prefix}-stack", prefix, template)


def test_moto_gaps_are_exactly_the_listed_ones(stack: Deployed) -> None:
    skipped = {t for t in stack.by_hand if not t.endswith("(copied)")}
    assert skipped == set(NOT_SUPPORTED), stack.by_hand
    types = {r["Type"] for r in stack.template["Resources"].values()}
    assert types >= COPIED
    # the notification topic's, and the SES-event queue's (the notification service's)
    assert len(stack.by_hand["AWS::SNS::Subscription"]) == 1 + len(resources_of().owned)
    assert len(stack.by_hand["AWS::StepFunctions::StateMachine (copied)"]) == len(KINDS)


def test_template_hardening(stack: Deployed) -> None:
    res = stack.template["Resources"]
    tables = [r["Properties"] for r in res.values() if r["Type"] == "AWS::DynamoDB::Table"]
    assert len(tables) == len(KINDS) + len(resources_of().tables) + 3  # leases, tombstones, keys
    for kind in KINDS:      # finished jobs expire (docs/architecture.md, "Data lifecycle")
        table = next(p for p in tables if p["TableName"] == kind.names(stack.prefix).table)
        assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at",
                                                    "Enabled": True}
    (archive,) = [r["Properties"] for r in res.values() if r["Type"] == "AWS::S3::Bucket"
                  and r["Properties"]["BucketName"].endswith("-archive")]
    assert archive["ObjectLockConfiguration"]["Rule"]["DefaultRetention"] == {
        "Mode": "GOVERNANCE", "Days": 7 * 365 + 2}
    assert archive["LifecycleConfiguration"]["Rules"][0]["Transitions"][0][
        "StorageClass"] == "DEEP_ARCHIVE"
    for t in tables:
        assert t["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert t["SSESpecification"]["SSEEnabled"] is True
        assert {"Key": "app", "Value": "remitflow"} in t["Tags"]
        assert {"Key": "team", "Value": "payments"} in t["Tags"]
    queues = [r["Properties"] for r in res.values() if r["Type"] == "AWS::SQS::Queue"]
    assert all(q.get("SqsManagedSseEnabled") for q in queues)
    roles = {r["Properties"]["RoleName"] for r in res.values() if r["Type"] == "AWS::IAM::Role"}
    names = StackNames(stack.prefix)
    assert roles == {names.sfn_role, *(names.name(s)
                                       for s in ("enrichment", "notification", "sweeper"))}
    for role in (r["Properties"] for r in res.values() if r["Type"] == "AWS::IAM::Role"):
        service = role["RoleName"].removeprefix(f"{stack.prefix}-")
        service = "workflows" if role["RoleName"] == names.sfn_role else service
        actions = {a for st in role["Policies"][0]["PolicyDocument"]["Statement"]
                   for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
        assert iam.allowed_actions(service) <= actions, service  # plus logging/KMS extras
        assert not {a for a in actions if a.endswith("*") and ":" in a} - {
            "kms:GenerateDataKey*"}, service
    for kind in KINDS:
        arn = stack.outputs[f"{_cfn_id(kind.name)}Out"]
        assert arn.endswith(f":stateMachine:{kind.names(stack.prefix).state_machine}")


async def test_one_remittance_end_to_end_on_the_stack(stack: Deployed, emulator: str) -> None:
    settings = Settings(prefix=stack.prefix)
    async with AwsClients(settings) as clients:
        await load_reference_data(clients, settings, reference_data())
        names = StackNames(stack.prefix)
        url = (await clients.sqs.get_queue_url(QueueName=names.remittance_events))["QueueUrl"]
        with services(stack.prefix) as urls:
            await all_ready(urls)
            await clients.sqs.send_message(QueueUrl=url,
                                           MessageBody=json.dumps(remittance("REQ-CDK-1")))
            await job_in(JobStore(clients.dynamodb, names.remittances), "REQ-CDK-1",
                         "COMPLETED", timeout_s=60)
            sent = await job_in(JobStore(clients.dynamodb, names.notifications), "REQ-CDK-1",
                                "SENT", timeout_s=60)
    assert sent.attempt == 1
    assert sent_emails(emulator), "the SES identity made by hand let the e-mail through"


async def test_stack_matches_bootstrap(stack: Deployed, emulator: str) -> None:
    """Same tables, keys, indexes, streams, queue attributes, subscription, workflows."""
    other = "bs" + uuid.uuid4().hex[:8]
    async with AwsClients(Settings(prefix=other)) as clients:
        await bootstrap_stack(Settings(prefix=other), clients)
    ours, theirs = _describe(emulator, stack.prefix), _describe(emulator, other)
    assert ours["tables"] == theirs["tables"]
    assert ours["subscriptions"] == theirs["subscriptions"]
    assert ours["state_machines"] == theirs["state_machines"]
    for queue, attrs in theirs["queues"].items():
        assert {k: v for k, v in ours["queues"][queue].items() if k in attrs} == attrs, queue
    # Beyond bootstrap: a policy on every queue (TLS only; the topic on its subscriber).
    sqs = client("sqs", emulator)
    for queue in ours["queues"]:
        url = sqs.get_queue_url(QueueName=stack.prefix + queue)["QueueUrl"]
        policy = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
        assert "aws:SecureTransport" in policy["Attributes"]["Policy"], queue


def _describe(endpoint: str, prefix: str) -> dict[str, Any]:
    """What exists under ``prefix``, with the prefix and endpoint normalised away."""
    names = StackNames(prefix)
    ddb, sqs, sns, sfn = (client(n, endpoint) for n in ("dynamodb", "sqs", "sns",
                                                         "stepfunctions"))
    tables = {}
    for kind in KINDS:
        tables[kind.table] = _table(ddb, kind.names(prefix).table)
    for spec in resources_of().tables:
        tables[spec.short] = _table(ddb, names.name(spec.short))
    tables["leases"] = _table(ddb, names.leases)
    for kind in KINDS:
        expected = {i[0] for i in (*JOB_INDEXES, *(HANDOFF_INDEXES if kind.handoff else ()))}
        assert {g["name"] for g in tables[kind.table]["gsis"]} == expected
    queues = {}
    owned_queues = tuple(q for o in resources_of().owned for q in o.queues(prefix))
    for base in (*names.queues, *owned_queues):
        for q in (base, names.dlq(base)):
            url = sqs.get_queue_url(QueueName=q)["QueueUrl"]
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            keep = {k: attrs[k] for k in ("VisibilityTimeout", "MessageRetentionPeriod")}
            if "RedrivePolicy" in attrs:
                policy = json.loads(attrs["RedrivePolicy"])
                keep["RedrivePolicy"] = {"dlq": policy["deadLetterTargetArn"].split(":")[-1]
                                         .removeprefix(prefix),
                                         "max": str(policy["maxReceiveCount"])}
            keep["SqsManagedSseEnabled"] = attrs.get("SqsManagedSseEnabled", "false")
            queues[q.removeprefix(prefix)] = keep
    # All pages: the session's emulator holds the topics of every test's stack.
    topic = next(t["TopicArn"] for page in sns.get_paginator("list_topics").paginate()
                 for t in page["Topics"] if t["TopicArn"].endswith(f":{names.enriched_topic}"))
    subs = []
    for sub in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]:
        attrs = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])
        subs.append((sub["Protocol"], sub["Endpoint"].split(":")[-1].removeprefix(prefix),
                     attrs["Attributes"].get("RawMessageDelivery")))
    machines = {}
    for kind in KINDS:
        pages = sfn.get_paginator("list_state_machines").paginate()
        arn = next(m["stateMachineArn"] for page in pages for m in page["stateMachines"]
                   if m["name"] == kind.names(prefix).state_machine)
        text = sfn.describe_state_machine(stateMachineArn=arn)["definition"]
        machines[kind.name] = _normalise(json.loads(text), prefix)
    return {"tables": tables, "queues": queues, "subscriptions": sorted(subs),
            "state_machines": machines}


def _table(ddb: Any, name: str) -> dict[str, Any]:
    t = ddb.describe_table(TableName=name)["Table"]
    return {"key": t["KeySchema"],
            "attributes": sorted(t["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
            "gsis": sorted(({"name": g["IndexName"], "key": g["KeySchema"],
                             "projection": g["Projection"]}
                            for g in t.get("GlobalSecondaryIndexes", [])),
                           key=lambda g: g["name"]),
            "stream": t.get("StreamSpecification", {}).get("StreamViewType")}


def _normalise(node: Any, prefix: str) -> Any:
    """Queue URLs → queue name, ARNs and names → without the prefix."""
    if isinstance(node, dict):
        return {k: _normalise(v, prefix) for k, v in node.items()}
    if isinstance(node, list):
        return [_normalise(v, prefix) for v in node]
    if isinstance(node, str) and prefix in node:
        tail = node.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        return tail.removeprefix(prefix)
    return node


def _cfn_id(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("-"))
