"""The emulator's own ceiling for one remittance's API-call mix, and the SDK's CPU floor.

After the pipeline run (services stopped), the measured mix — the services' own
calls per remittance, the calls the emulator's Step Functions executions make
back into it (task ``SendMessage``, SNS ``Publish``, ``UpdateItem``) and the
partner's ``SendMessageBatch`` — is replayed with one bare aiobotocore client per
service at high concurrency against the same emulator and the same tables.
``ceiling_rps`` = calls completed / calls per remittance / seconds.

Operations that cannot be replayed faithfully are replaced by the closest cheap
call of the same service; :data:`SUBSTITUTES` lists them and the results repeat it.
The bench process's own CPU time over the replay, divided by the calls made, is a
bare aiobotocore call's client CPU (the SDK floor per call).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from shared.aws.dynamo import from_item, to_item
from tools.stack import StackNames as Names

Call = Callable[[], Awaitable[Any]]

SUBSTITUTES = {
    "sfn.SendTaskSuccess": "sfn.DescribeExecution (a task token only exists inside a live "
                           "execution waiting on it)",
    "sfn.SendTaskFailure": "sfn.DescribeExecution (needs a live task token)",
    "sfn.SendTaskHeartbeat": "sfn.DescribeExecution (needs a live task token)",
    "sfn.StartExecution": "sfn.StartExecution of a copy of the workflow without the callback "
                          "wait: its executions make the same calls back into the emulator "
                          "(task SendMessage, Publish, UpdateItem), so those are not replayed "
                          "separately",
    "sqs.DeleteMessage": "sqs.DeleteMessage of a message received in the replay (or a stale "
                         "receipt handle when none is at hand)",
    "sqs.DeleteMessageBatch": "sqs.DeleteMessageBatch of messages received in the replay",
}
_GENERIC = {"sqs": "GetQueueAttributes", "dynamodb": "DescribeTable",
            "dynamodb-streams": "DescribeStream", "sfn": "DescribeExecution",
            "sns": "GetTopicAttributes", "ses": "GetSendQuota"}


class Replay:
    """Bare clients plus one replayer per ``service.Operation``."""

    def __init__(self, endpoint: str, prefix: str, concurrency: int = 32) -> None:
        self.endpoint = endpoint
        self.names = Names(prefix)
        self.concurrency = concurrency
        self.c: dict[str, Any] = {}
        self.receipts: list[str] = []
        self.iterators: list[str] = []
        self.substituted: dict[str, str] = {}
        self._ids = itertools.count()

    async def __aenter__(self) -> Replay:
        self._session = get_session()
        cfg = AioConfig(max_pool_connections=self.concurrency * 2,
                        retries={"mode": "standard", "max_attempts": 3})
        self._ctx: list[Any] = []
        for name in ("sqs", "dynamodb", "dynamodbstreams", "stepfunctions", "sns", "ses"):
            ctx = self._session.create_client(name, region_name="us-east-1",
                                              endpoint_url=self.endpoint, config=cfg)
            self._ctx.append(ctx)
            self.c[name] = await ctx.__aenter__()
        await self._setup()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ctx in reversed(self._ctx):
            await ctx.__aexit__(None, None, None)

    async def _setup(self) -> None:
        sqs, ddb, sfn, sns = (self.c["sqs"], self.c["dynamodb"], self.c["stepfunctions"],
                              self.c["sns"])
        self.queue = (await sqs.create_queue(QueueName="ceil-queue"))["QueueUrl"]
        arn = (await sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])
               )["Attributes"]["QueueArn"]
        self.topic = (await sns.create_topic(Name="ceil-topic"))["TopicArn"]
        await sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=arn,
                            Attributes={"RawMessageDelivery": "true"})
        table = self.names.remittances
        scan = await ddb.scan(TableName=table, Limit=5, ConsistentRead=True)
        self.item = from_item(scan["Items"][0])
        self.real_ids = [from_item(i)["request_id"] for i in scan["Items"]]
        self.advice = str(self.item.get("advice") or json.dumps(self.item))
        self.payload = str(self.item.get("payload", "{}"))
        inv = from_item((await ddb.scan(TableName=self.names.invoices, Limit=1))["Items"][0])
        self.invoice = (inv["invoice_id"], inv["payee_id"])
        stream_arn = (await ddb.describe_table(TableName=table))["Table"]["LatestStreamArn"]
        self.stream_arn = stream_arn
        shards = (await self.c["dynamodbstreams"].describe_stream(StreamArn=stream_arn)
                  )["StreamDescription"]["Shards"]
        self.shard = shards[-1]["ShardId"]
        self.machines = [await self._machine(sfn, kind) for kind in ("enrich", "notify")]
        self.started: list[str] = []
        enrich = ""
        async for page in sfn.get_paginator("list_state_machines").paginate():
            enrich = next((m["stateMachineArn"] for m in page["stateMachines"]
                           if m["name"] == self.names.enrichment_sm), enrich)
        self.execution = (await sfn.list_executions(stateMachineArn=enrich, maxResults=1)
                          )["executions"][0]["executionArn"]
        self.copies: list[str] = []

    async def _machine(self, sfn: Any, kind: str) -> str:
        """The workflow's success path minus the callback wait (same calls back in)."""
        table = self.names.remittances
        update = {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:updateItem",
                  "Parameters": {"TableName": table,
                                 "Key": {"request_id": {"S.$": "$.request_id"}},
                                 "UpdateExpression": "SET #v = #v + :one, updated_at = :now",
                                 "ExpressionAttributeNames": {"#v": "version"},
                                 "ExpressionAttributeValues": {
                                     ":one": {"N": "1"}, ":now": {"S.$": "$$.State.EnteredTime"}}},
                  "ResultPath": None, "End": True}
        task = {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                "Parameters": {"QueueUrl": self.queue, "MessageBody": {
                    "task_token.$": "$$.Execution.Id", "request_id.$": "$.request_id"}},
                "ResultPath": None, "Next": "Publish" if kind == "enrich" else "Mark"}
        states: dict[str, Any] = {"Process": task, "Mark": update}
        if kind == "enrich":
            states["Publish"] = {"Type": "Task", "Resource": "arn:aws:states:::sns:publish",
                                 "Parameters": {"TopicArn": self.topic, "Message": self.advice},
                                 "ResultPath": None, "Next": "Mark"}
        resp = await sfn.create_state_machine(
            name=f"ceil-{kind}-{uuid.uuid4().hex[:6]}", roleArn="arn:aws:iam::123456789012:role/x",
            definition=json.dumps({"StartAt": "Process", "States": states}))
        return str(resp["stateMachineArn"])

    async def wait_executions(self, timeout_s: float = 120.0) -> None:
        """Until every execution the replay started has finished (their work is the mix's)."""
        sfn = self.c["stepfunctions"]
        deadline = time.monotonic() + timeout_s
        pending = list(self.started)
        while pending and time.monotonic() < deadline:
            desc = await sfn.describe_execution(executionArn=pending[-1])
            if desc["status"] == "RUNNING":
                await asyncio.sleep(0.1)
                continue
            pending.pop()

    def _new_item(self) -> dict[str, Any]:
        rid = f"CEIL-{next(self._ids):07d}-{uuid.uuid4().hex[:6]}"
        self.copies.append(rid)
        return {**self.item, "request_id": rid, "version": 1}

    def replayer(self, op: str) -> Call:
        """The call that stands for one ``service.Operation``."""
        service, _, name = op.partition(".")
        fn = getattr(self, f"_{service.replace('-', '_')}_{name}", None)
        if op in SUBSTITUTES:
            self.substituted[op] = SUBSTITUTES[op]
        if fn is None:
            fn = getattr(self, f"_{service.replace('-', '_')}_{_GENERIC.get(service, '')}", None)
            if fn is None:
                raise KeyError(op)
            self.substituted[op] = f"{service}.{_GENERIC[service]} (not replayed as such)"
        return fn  # type: ignore[no-any-return]

    # --- SQS -------------------------------------------------------------------------
    async def _sqs_SendMessage(self) -> Any:
        return await self.c["sqs"].send_message(QueueUrl=self.queue, MessageBody=json.dumps(
            {"task_token": uuid.uuid4().hex * 8, "request_id": "CEIL", "attempt": 1}))

    async def _sqs_SendMessageBatch(self) -> Any:
        return await self.c["sqs"].send_message_batch(QueueUrl=self.queue, Entries=[
            {"Id": str(i), "MessageBody": self.payload} for i in range(10)])

    async def _sqs_ReceiveMessage(self) -> Any:
        resp = await self.c["sqs"].receive_message(
            QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=0,
            VisibilityTimeout=60, MessageAttributeNames=["All"])
        self.receipts.extend(m["ReceiptHandle"] for m in resp.get("Messages", []))
        return resp

    async def _sqs_DeleteMessage(self) -> Any:
        handle = self.receipts.pop() if self.receipts else "stale-" + uuid.uuid4().hex
        try:
            return await self.c["sqs"].delete_message(QueueUrl=self.queue, ReceiptHandle=handle)
        except Exception:
            return None

    async def _sqs_DeleteMessageBatch(self) -> Any:
        handles = [self.receipts.pop() for _ in range(min(10, len(self.receipts)))] or [
            "stale-" + uuid.uuid4().hex]
        return await self.c["sqs"].delete_message_batch(QueueUrl=self.queue, Entries=[
            {"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)])

    async def _sqs_ChangeMessageVisibility(self) -> Any:
        handle = self.receipts[-1] if self.receipts else "stale-" + uuid.uuid4().hex
        try:
            return await self.c["sqs"].change_message_visibility(
                QueueUrl=self.queue, ReceiptHandle=handle, VisibilityTimeout=60)
        except Exception:
            return None

    async def _sqs_GetQueueAttributes(self) -> Any:
        return await self.c["sqs"].get_queue_attributes(
            QueueUrl=self.queue, AttributeNames=["ApproximateNumberOfMessages"])

    async def _sqs_GetQueueUrl(self) -> Any:
        return await self.c["sqs"].get_queue_url(QueueName="ceil-queue")

    # --- DynamoDB --------------------------------------------------------------------
    async def _dynamodb_PutItem(self) -> Any:
        return await self.c["dynamodb"].put_item(
            TableName=self.names.remittances, Item=to_item(self._new_item()),
            ConditionExpression="attribute_not_exists(request_id)")

    async def _dynamodb_GetItem(self) -> Any:
        return await self.c["dynamodb"].get_item(
            TableName=self.names.remittances, ConsistentRead=True,
            Key={"request_id": {"S": random.choice(self.copies or self.real_ids)}})

    async def _dynamodb_UpdateItem(self) -> Any:
        rid = random.choice(self.copies or self.real_ids)
        return await self.c["dynamodb"].update_item(
            TableName=self.names.remittances, Key={"request_id": {"S": rid}},
            UpdateExpression="SET #v = #v + :one, updated_at = :now",
            ConditionExpression="attribute_exists(request_id)",
            ExpressionAttributeNames={"#v": "version"},
            ExpressionAttributeValues={":one": {"N": "1"}, ":now": {"S": str(time.time())}},
            ReturnValues="ALL_NEW")

    async def _dynamodb_BatchGetItem(self) -> Any:
        invoice, payee = self.invoice
        return await self.c["dynamodb"].batch_get_item(RequestItems={
            self.names.payees: {"Keys": [{"payee_id": {"S": payee}}]},
            self.names.invoices: {"Keys": [{"invoice_id": {"S": invoice}}]}})

    async def _dynamodb_Query(self) -> Any:
        return await self.c["dynamodb"].query(
            TableName=self.names.remittances, IndexName="running-index",
            KeyConditionExpression="#pk = :pk", ExpressionAttributeNames={"#pk": "running_job"},
            ExpressionAttributeValues={":pk": {"S": "s0"}}, Limit=100)

    async def _dynamodb_Scan(self) -> Any:
        return await self.c["dynamodb"].scan(TableName=self.names.leases, ConsistentRead=True)

    async def _dynamodb_DescribeTable(self) -> Any:
        return await self.c["dynamodb"].describe_table(TableName=self.names.remittances)

    # --- DynamoDB Streams ------------------------------------------------------------
    async def _dynamodb_streams_GetRecords(self) -> Any:
        streams = self.c["dynamodbstreams"]
        it = self.iterators.pop() if self.iterators else (await streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=self.shard, ShardIteratorType="LATEST")
        )["ShardIterator"]
        resp = await streams.get_records(ShardIterator=it, Limit=100)
        if resp.get("NextShardIterator"):
            self.iterators.append(resp["NextShardIterator"])
        return resp

    async def _dynamodb_streams_GetShardIterator(self) -> Any:
        return await self.c["dynamodbstreams"].get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=self.shard, ShardIteratorType="LATEST")

    async def _dynamodb_streams_DescribeStream(self) -> Any:
        return await self.c["dynamodbstreams"].describe_stream(StreamArn=self.stream_arn)

    # --- Step Functions, SNS, SES ----------------------------------------------------
    async def _sfn_StartExecution(self) -> Any:
        machine = self.machines[len(self.started) % 2]
        resp = await self.c["stepfunctions"].start_execution(
            stateMachineArn=machine, name=uuid.uuid4().hex,
            input=json.dumps({"request_id": random.choice(self.copies or self.real_ids)}))
        self.started.append(resp["executionArn"])
        return resp

    async def _sfn_DescribeExecution(self) -> Any:
        return await self.c["stepfunctions"].describe_execution(executionArn=self.execution)

    _sfn_SendTaskSuccess = _sfn_DescribeExecution
    _sfn_SendTaskFailure = _sfn_DescribeExecution
    _sfn_SendTaskHeartbeat = _sfn_DescribeExecution

    async def _sns_Publish(self) -> Any:
        return await self.c["sns"].publish(TopicArn=self.topic, Message=self.advice,
                                           MessageAttributes={"channel": {
                                               "DataType": "String", "StringValue": "email"}})

    async def _sns_GetTopicAttributes(self) -> Any:
        return await self.c["sns"].get_topic_attributes(TopicArn=self.topic)

    async def _ses_SendEmail(self) -> Any:
        return await self.c["ses"].send_email(
            Source="remittances@example.com", Destination={"ToAddresses": ["x@example.com"]},
            Message={"Subject": {"Data": "Remittance advice"},
                     "Body": {"Text": {"Data": self.advice},
                              "Html": {"Data": f"<pre>{self.advice}</pre>" * 3}}})

    async def _ses_GetSendQuota(self) -> Any:
        return await self.c["ses"].get_send_quota()


async def measure(endpoint: str, prefix: str, mix: dict[str, float], *, seconds: float,
                  concurrency: int = 32, emulator_cpu: Callable[[], float] | None = None
                  ) -> dict[str, Any]:
    """Replay ``mix`` (calls per remittance) for ``seconds``; the emulator's rate for it."""
    per_remittance = sum(mix.values())
    async with Replay(endpoint, prefix, concurrency) as replay:
        # A shuffled deck of 200 remittances' worth of calls, dealt round-robin.
        deck: list[str] = []
        for op, n in mix.items():
            deck += [op] * max(1, round(n * 200))
        random.shuffle(deck)
        calls = [replay.replayer(op) for op in deck]
        for _ in range(3):
            await replay._sqs_SendMessageBatch()
        done: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        position = itertools.count()
        stop_at = 0.0

        async def worker() -> None:
            while time.monotonic() < stop_at:
                i = next(position) % len(deck)
                try:
                    await calls[i]()
                    done[deck[i]] += 1
                except Exception as exc:
                    errors[f"{deck[i]}: {type(exc).__name__}"] += 1

        cpu0, emu0 = time.process_time(), emulator_cpu() if emulator_cpu else 0.0
        started = time.monotonic()
        stop_at = started + seconds
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await replay.wait_executions()
        wall = time.monotonic() - started
        cpu = time.process_time() - cpu0
        emu = (emulator_cpu() if emulator_cpu else 0.0) - emu0
        total = sum(done.values()) + sum(errors.values())
        remittances = total / per_remittance
        return {
            "ceiling_rps": round(remittances / wall, 2),
            "calls_per_s": round(total / wall, 1),
            "calls_per_remittance": round(per_remittance, 2),
            "seconds": round(wall, 1), "concurrency": concurrency, "calls": total,
            "errors": dict(errors.most_common(8)),
            "client_cpu_ms_per_call": round(cpu * 1000 / max(1, total), 3),
            "client_cpu_utilisation": round(cpu / wall, 2),
            "emulator_cpu_ms_per_remittance": round(emu * 1000 / max(1e-9, remittances), 1),
            "executions_started": len(replay.started),
            "substitutions": replay.substituted,
        }
