"""Fixtures module: synthesise ``deploy/cdk`` once and deploy it into the emulator through
CloudFormation, completing by hand only what moto's CloudFormation cannot create.

What moto's CloudFormation does not do, listed so nothing is assumed silently
(``tests/deploy/test_cdk_stack.py`` asserts the list is exact):

- ``AWS::SNS::Subscription``, ``AWS::SQS::QueuePolicy``, ``AWS::SES::EmailIdentity``:
  not supported (a warning, then the stack completes without them). Created here
  from the template's own properties (intrinsics resolved against the stack).
- ``AWS::StepFunctions::StateMachine``: created, but in moto's non-executing
  Step Functions backend, which the API no longer shows once execution is switched
  on. Copied here verbatim (the definition CloudFormation resolved, role, logging)
  into the executing backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "deploy" / "cdk" / "app.py"
NOT_SUPPORTED = frozenset({"AWS::SNS::Subscription", "AWS::SQS::QueuePolicy",
                           "AWS::SES::EmailIdentity", "AWS::SNS::TopicPolicy",
                           "AWS::SES::ConfigurationSet",
                           "AWS::SES::ConfigurationSetEventDestination"})
COPIED = frozenset({"AWS::StepFunctions::StateMachine"})
PSEUDO = {"AWS::AccountId": "123456789012", "AWS::Region": "us-east-1", "AWS::Partition": "aws"}


def synth(outdir: Path, context: dict[str, Any], app: Path = APP) -> dict[str, Any]:
    """Run the CDK app (``app.synth()`` on the machine's Node) and load its one template.

    ``app`` is another checkout's ``deploy/cdk/app.py`` (it imports its own tree).
    """
    env = {**os.environ, "CDK_OUTDIR": str(outdir), "CDK_CONTEXT_JSON": json.dumps(context)}
    subprocess.run([sys.executable, str(app)], env=env, check=True, capture_output=True,
                   timeout=300)
    (template,) = outdir.glob("*.template.json")
    data: dict[str, Any] = json.loads(template.read_text())
    return data


def client(name: str, endpoint: str) -> Any:
    return boto3.client(name, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@dataclass
class Deployed:
    """A stack created through CloudFormation, and what had to be completed by hand."""

    name: str
    prefix: str
    template: dict[str, Any]
    outputs: dict[str, str]
    physical: dict[str, str]
    by_hand: dict[str, list[str]]


def _execute(endpoint: str, on: bool) -> None:
    body = json.dumps({"stepfunctions": {"execute_state_machine": on}}).encode()
    req = urllib.request.Request(f"{endpoint}/moto-api/config", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def deploy(endpoint: str, name: str, prefix: str, template: dict[str, Any]) -> Deployed:
    cfn = client("cloudformation", endpoint)
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template),
                     Capabilities=["CAPABILITY_NAMED_IAM"])
    deadline = time.monotonic() + 60
    while (status := cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]) \
            == "CREATE_IN_PROGRESS":
        assert time.monotonic() < deadline, "stack still CREATE_IN_PROGRESS"
        time.sleep(0.2)
    assert status == "CREATE_COMPLETE", status
    summaries = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in summaries}
    outputs = {o["OutputKey"]: o["OutputValue"]
               for o in cfn.describe_stacks(StackName=name)["Stacks"][0].get("Outputs", [])}
    deployed = Deployed(name, prefix, template, outputs, physical, {})
    resources = template["Resources"]
    missing = {k: v for k, v in resources.items() if k not in physical}
    # a configuration set before its event destination (CloudFormation's DependsOn)
    order = sorted(missing.items(),
                   key=lambda kv: (kv[1]["Type"] != "AWS::SES::ConfigurationSet", kv[0]))
    for logical, res in order:
        deployed.by_hand.setdefault(res["Type"], []).append(logical)
        props = _resolve(res.get("Properties", {}), deployed)
        if res["Type"] == "AWS::SNS::Subscription":
            client("sns", endpoint).subscribe(
                TopicArn=props["TopicArn"], Protocol=props["Protocol"],
                Endpoint=props["Endpoint"],
                Attributes={"RawMessageDelivery": str(props["RawMessageDelivery"]).lower()})
        elif res["Type"] == "AWS::SQS::QueuePolicy":
            for url in props["Queues"]:
                client("sqs", endpoint).set_queue_attributes(
                    QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})
        elif res["Type"] == "AWS::SES::EmailIdentity":
            client("ses", endpoint).verify_email_identity(EmailAddress=props["EmailIdentity"])
        elif res["Type"] == "AWS::SNS::TopicPolicy":
            for arn in props["Topics"]:
                client("sns", endpoint).set_topic_attributes(
                    TopicArn=arn, AttributeName="Policy",
                    AttributeValue=json.dumps(props["PolicyDocument"]))
        elif res["Type"] == "AWS::SES::ConfigurationSet":
            client("ses", endpoint).create_configuration_set(ConfigurationSet={
                "Name": props["Name"]})
        elif res["Type"] == "AWS::SES::ConfigurationSetEventDestination":
            dest = props["EventDestination"]
            client("ses", endpoint).create_configuration_set_event_destination(
                ConfigurationSetName=props["ConfigurationSetName"], EventDestination={
                    "Name": dest["Name"], "Enabled": dest["Enabled"],
                    "MatchingEventTypes": dest["MatchingEventTypes"],
                    "SNSDestination": {"TopicARN": dest["SnsDestination"]["TopicARN"]}})
        else:
            raise AssertionError(f"moto's CloudFormation skipped {res['Type']} ({logical})")
    _copy_state_machines(endpoint, deployed)
    return deployed


def _copy_state_machines(endpoint: str, deployed: Deployed) -> None:
    sfn = client("stepfunctions", endpoint)
    machines = [k for k, v in deployed.template["Resources"].items()
                if v["Type"] in COPIED]
    _execute(endpoint, False)
    try:
        described = [sfn.describe_state_machine(stateMachineArn=deployed.physical[k])
                     for k in machines]
    finally:
        _execute(endpoint, True)
    for logical, desc in zip(machines, described, strict=True):
        kwargs: dict[str, Any] = {"name": desc["name"], "definition": desc["definition"],
                                  "roleArn": desc["roleArn"], "type": "STANDARD"}
        sfn.create_state_machine(**kwargs)
        deployed.by_hand.setdefault("AWS::StepFunctions::StateMachine (copied)", []).append(
            logical)


def _resolve(node: Any, deployed: Deployed) -> Any:
    """Resolve the intrinsics the skipped resources use (Ref, Fn::GetAtt Arn, Fn::Join)."""
    if isinstance(node, list):
        return [_resolve(v, deployed) for v in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        if node["Ref"] in PSEUDO:
            return PSEUDO[node["Ref"]]
        return deployed.physical[node["Ref"]]
    if set(node) == {"Fn::GetAtt"}:
        logical, attr = node["Fn::GetAtt"]
        assert attr == "Arn", node
        value = deployed.physical[logical]
        if value.startswith("http"):  # a queue URL: .../<account>/<name>
            account, queue = value.rstrip("/").split("/")[-2:]
            return f"arn:aws:sqs:us-east-1:{account}:{queue}"
        return value
    if set(node) == {"Fn::Join"}:
        sep, parts = node["Fn::Join"]
        return sep.join(str(_resolve(p, deployed)) for p in parts)
    return {k: _resolve(v, deployed) for k, v in node.items()}
