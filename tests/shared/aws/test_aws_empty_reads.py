"""Empty polls are counted apart from the requests that carried work (real emulator).

``tools/bench`` bills them per day, not per remittance, so the count must be exact:
an empty ``ReceiveMessage`` / ``GetRecords`` counts, one that returned data does not,
and every call still counts as a request.
"""

from __future__ import annotations

import pytest

from shared.aws.dynamo import to_item
from shared.metrics import AWS_EMPTY_READS, AWS_REQUESTS
from tests.helpers import Env

pytestmark = pytest.mark.own_stack(
    "expects the intake queue empty, "
    "which other tests' leftovers are not")


def count(metric: object, service: str, operation: str) -> float:
    return float(metric.labels(service=service, operation=operation)._value.get())  # type: ignore[attr-defined]


async def test_empty_receives_and_stream_reads_are_counted_apart(env: Env) -> None:
    sqs, streams = env.clients.sqs, env.clients.streams
    url = await env.queue_url(env.names.remittance_events)
    empty, calls = count(AWS_EMPTY_READS, "sqs", "ReceiveMessage"), \
        count(AWS_REQUESTS, "sqs", "ReceiveMessage")
    await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    assert count(AWS_EMPTY_READS, "sqs", "ReceiveMessage") == empty + 1
    await sqs.send_message(QueueUrl=url, MessageBody="{}")
    got = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert got.get("Messages")
    assert count(AWS_EMPTY_READS, "sqs", "ReceiveMessage") == empty + 1, "a full read counted"
    assert count(AWS_REQUESTS, "sqs", "ReceiveMessage") == calls + 2

    arn = (await env.clients.dynamodb.describe_table(
        TableName=env.names.remittances))["Table"]["LatestStreamArn"]
    shard = (await streams.describe_stream(StreamArn=arn))["StreamDescription"]["Shards"][0]
    iterator = (await streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST"))["ShardIterator"]
    empty = count(AWS_EMPTY_READS, "dynamodb-streams", "GetRecords")
    resp = await streams.get_records(ShardIterator=iterator)
    assert not resp.get("Records")
    assert count(AWS_EMPTY_READS, "dynamodb-streams", "GetRecords") == empty + 1
    await env.clients.dynamodb.put_item(TableName=env.names.remittances, Item=to_item(
        {"request_id": "REQ-EMPTY-READS", "status": "RECEIVED"}))
    resp = await streams.get_records(ShardIterator=resp["NextShardIterator"])
    assert resp.get("Records")
    assert count(AWS_EMPTY_READS, "dynamodb-streams", "GetRecords") == empty + 1
