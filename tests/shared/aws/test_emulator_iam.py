"""The emulator's IAM enforcement (``shared/aws/emulator_iam.py``): scoped grants are
honoured and their neighbours refused, for the services moto evaluates against ``*``
as shipped, and a workflow's tasks run as its role.

An emulator of its own: enforcement is global to a moto server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from shared.aws.emulator import enforce_iam, wait_until_up
from tests.helpers import free_port

# An emulator process of its own: not a unit test, whatever its fixtures say.
pytestmark = pytest.mark.e2e

ACCOUNT, REGION = "123456789012", "us-east-1"


def _arn(service: str, rest: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{rest}"


@pytest.fixture(scope="module")
def clients() -> Iterator[dict[str, Any]]:
    """Admin and a scoped user's clients, after enforcement was switched on."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "emulator", "--port",
                             str(port)], env={**os.environ, "MOTO_PORT": str(port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up("127.0.0.1", port, timeout_s=60)
        yield _provision(endpoint)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _client(service: str, endpoint: str, key: tuple[str, str]) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=key[0], aws_secret_access_key=key[1])


def _provision(endpoint: str) -> dict[str, Any]:
    boot = ("testing", "testing")
    ddb, iam, sqs = (_client(s, endpoint, boot) for s in ("dynamodb", "iam", "sqs"))
    for table in ("tab1", "tab2"):
        ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                         StreamSpecification={"StreamEnabled": True,
                                              "StreamViewType": "NEW_AND_OLD_IMAGES"})
    queues = {q: sqs.create_queue(QueueName=q)["QueueUrl"] for q in ("q1", "q2")}
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName="sfn", PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage",
                                                "Resource": _arn("sqs", "q1")}]}))
    scoped = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["dynamodb:PutItem", "dynamodb:BatchGetItem"],
         "Resource": _arn("dynamodb", "table/tab1")},
        {"Effect": "Allow", "Action": ["dynamodb:ListStreams"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["dynamodb:DescribeStream", "dynamodb:GetShardIterator",
                                       "dynamodb:GetRecords"],
         "Resource": _arn("dynamodb", "table/tab1/stream/*")},
        {"Effect": "Allow", "Action": ["sqs:GetQueueUrl", "sqs:SendMessage",
                                       "sqs:ReceiveMessage", "sqs:DeleteMessage"],
         "Resource": _arn("sqs", "q1")}]}
    keys: dict[str, tuple[str, str]] = {}
    for user, doc in (("scoped", scoped), ("admin", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]})):
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(doc))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
    enforce_iam(endpoint)
    return {"endpoint": endpoint, "keys": keys, "queues": queues,
            "role": role["Role"]["Arn"],
            "user": {s: _client(s, endpoint, keys["scoped"])
                     for s in ("dynamodb", "dynamodbstreams", "sqs")},
            "admin": {s: _client(s, endpoint, keys["admin"])
                      for s in ("stepfunctions", "sqs", "dynamodb")}}


def refused(call: Callable[[], Any]) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403)
    return False


def test_a_grant_on_one_table_allows_it_and_refuses_the_other(clients: dict[str, Any]) -> None:
    ddb = clients["user"]["dynamodb"]
    item = {"k": {"S": "a"}}
    ddb.put_item(TableName="tab1", Item=item)
    assert refused(lambda: ddb.put_item(TableName="tab2", Item=item))
    ddb.batch_get_item(RequestItems={"tab1": {"Keys": [item]}})
    assert refused(lambda: ddb.batch_get_item(
        RequestItems={"tab1": {"Keys": [item]}, "tab2": {"Keys": [item]}})), \
        "every table of a batch must be allowed"


def test_a_stream_grant_covers_its_records(clients: dict[str, Any]) -> None:
    streams = clients["user"]["dynamodbstreams"]
    arn = streams.list_streams(TableName="tab1")["Streams"][0]["StreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    streams.get_records(ShardIterator=it)
    other = clients["admin"]["dynamodb"].describe_table(
        TableName="tab2")["Table"]["LatestStreamArn"]
    assert refused(lambda: streams.describe_stream(StreamArn=other))


def test_queue_lookups_and_batches_are_checked_as_aws_does(clients: dict[str, Any]) -> None:
    sqs = clients["user"]["sqs"]
    url = sqs.get_queue_url(QueueName="q1")["QueueUrl"]
    assert refused(lambda: sqs.get_queue_url(QueueName="q2"))
    sqs.send_message(QueueUrl=url, MessageBody="x")
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    # a batch is authorised as its single action (sqs:DeleteMessage)
    done = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": "1", "ReceiptHandle": got[0]["ReceiptHandle"]}])
    assert done.get("Successful"), done


def test_a_workflow_task_runs_as_the_state_machine_role(clients: dict[str, Any]) -> None:
    sfn, sqs = clients["admin"]["stepfunctions"], clients["admin"]["sqs"]
    status = {}
    for queue in ("q1", "q2"):
        definition = {"StartAt": "S", "States": {"S": {
            "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
            "Parameters": {"QueueUrl": clients["queues"][queue], "MessageBody": "hi"},
            "End": True}}}
        machine = sfn.create_state_machine(name=f"sm-{queue}", roleArn=clients["role"],
                                           definition=json.dumps(definition))
        run = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="e1")
        deadline = time.monotonic() + 30
        while (state := sfn.describe_execution(executionArn=run["executionArn"])["status"]) \
                == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
        status[queue] = state
    assert status == {"q1": "SUCCEEDED", "q2": "FAILED"}, "the role allows q1 only"
    assert sqs.get_queue_attributes(QueueUrl=clients["queues"]["q2"], AttributeNames=[
        "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"] == "0"
