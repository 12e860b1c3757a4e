"""Event queues back off like the intakes: a DynamoDB outage dead-letters no valid event.

For each event consumer that needs DynamoDB to apply an event (SES events, execution
status events, bank-file events), DynamoDB is made to fail for the job table (from outside, by
``tests/faultproxy.py``) while a valid event waits. The consumer hides the event
again each time with a visibility that grows with its receive count (the intakes'
schedule, ``shared/aws/sqs.py``: ``SqsWorker.defer``) instead of letting it come back
every visibility timeout until the redrive policy dead-letters it; once DynamoDB is
back, the event is applied, the queue is empty after a visibility timeout and its DLQ
holds nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

import pytest

from services.enrichment.bankfiles.worker import FileIntake
from services.enrichment.service import build as build_enrichment
from services.notification.service import build as build_notification
from services.notification.ses_events import SesEvents
from services.sweeper.service import build_status_events, build_sweeper
from shared.aws.clients import AwsClients
from shared.aws.sqs import EventQueueWorker, SqsWorker
from shared.pipeline.jobs import Job, Status, content_hash, execution_name
from shared.settings import Settings
from tests.faultproxy import Fault, FaultProxy
from tests.helpers import (
    Env,
    detail_of,
    eventually,
    publish_status_event,
    replace_settings,
    started_job,
)
from tools.stack import KINDS, file_drops

EXAMPLES = resources.files("shared.contracts").joinpath("examples", "iso20022")

VISIBILITY_S = 5
REFUSED_RECEIVES = 3


@dataclass
class Case:
    """One event queue: its short name, the job table its consumer writes, how to
    build the consumer, and how to put one valid event for ``request_id`` on it."""

    queue: str
    table: str
    consumer: Callable[[Settings, AwsClients], Awaitable[SqsWorker]]
    event: Callable[[Env, str], Awaitable[str]]     # returns the request id to watch
    settled: Callable[[Job], bool]


async def files_consumer(settings: Settings, clients: AwsClients) -> SqsWorker:
    parts = await build_enrichment(settings, clients)
    return next(w for w in parts.workers if isinstance(w, FileIntake))


async def ses_consumer(settings: Settings, clients: AwsClients) -> EventQueueWorker:
    parts = await build_notification(settings, clients)
    return next(w for w in parts.workers if isinstance(w, SesEvents))


async def status_consumer(settings: Settings, clients: AwsClients) -> EventQueueWorker:
    return await build_status_events(settings, clients,
                                     await build_sweeper(settings, clients, KINDS))


async def bank_file(env: Env, request_id: str) -> str:
    """A bank's pain.002 file in the partner-files bucket (S3 sends its ObjectCreated event)."""
    data = EXAMPLES.joinpath("pain.002.001.10-accepted-and-rejected.xml").read_bytes()
    bucket = file_drops(env.settings)[0].bucket_name(env.settings.prefix)
    await env.clients.s3.put_object(Bucket=bucket, Key=f"FIRSTBANK/{request_id}.xml",
                                    Body=data)
    return "ISO-FIRSTBANK-E2E-FB-0003"       # the file's last transaction: it is done


async def ses_event(env: Env, request_id: str) -> str:
    """A notification in doubt (intent recorded, attempt 1) and SES's Send event for it."""
    store = env.store("notifications")
    payload = json.dumps({"request_id": request_id})
    job = await store.create(request_id, payload, content_hash(payload))
    assert job is not None
    await store.transition(job, Status.RUNNING, sort_value=0, set_={
        "attempt": 1, "execution_name": execution_name(request_id, 1),
        "delivery_intent": "email@2026-12-03T00:00:00Z"})
    topic = (await env.clients.sns.create_topic(Name=env.names.name("ses-events")))["TopicArn"]
    await env.clients.sns.publish(TopicArn=topic, Message=json.dumps({
        "eventType": "Send", "send": {},
        "mail": {"messageId": f"ses-{request_id}", "source": "remittances@example.com",
                 "tags": {"request_id": [request_id], "attempt": ["1"]}}}))
    return request_id


async def status_event(env: Env, request_id: str) -> str:
    """A real execution of attempt 1, stopped, and Step Functions' ABORTED event for it."""
    _, desc = await started_job(env, request_id)
    await env.clients.sfn.stop_execution(executionArn=desc["executionArn"])
    await publish_status_event(env, detail_of(desc, "ABORTED"))
    return request_id


CASES = {
    "ses-events": Case("ses-events", "notifications", ses_consumer, ses_event,
                       lambda job: job.raw.get("delivery_id") is not None),
    "execution-status": Case("execution-status", "remittances", status_consumer,
                             status_event, lambda job: job.status is Status.RETRY_PENDING),
    "partner-files": Case("partner-files", "remittances", files_consumer, bank_file,
                          lambda job: True),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_an_outage_delays_events_and_dead_letters_none(fresh_env: Env, name: str) -> None:
    env, case = fresh_env, CASES[name]
    queue = env.names.name(case.queue)
    table = env.names.table(case.table)
    key = f"REQ-OUT-{uuid.uuid4().hex[:10]}"
    async with FaultProxy(env.endpoint) as proxy:
        settings = replace_settings(env.settings, **{
            "aws_endpoint_url": proxy.endpoint, "visibility_timeout_s": VISIBILITY_S,
            "aws_max_attempts": 1, "intake_retry_base_s": 2, "intake_retry_cap_s": 60})
        async with AwsClients(settings) as clients:
            worker = await case.consumer(settings, clients)
            proxy.record("AmazonSQS.ChangeMessageVisibility")
            proxy.fail(Fault("DynamoDB_20120810.", body=rf'"TableName":\s*"{table}"',
                             kinds=("error", "throttle")))
            task = asyncio.create_task(worker.run())
            try:
                request_id = await case.event(env, key)

                def hidden() -> list[int]:
                    return [json.loads(b)["VisibilityTimeout"] for b in
                            proxy.requests["AmazonSQS.ChangeMessageVisibility"] if queue in b]

                async def refused_enough() -> bool:
                    return bool(proxy.refused) \
                        and len(hidden()) >= REFUSED_RECEIVES

                await eventually(refused_enough, timeout_s=90,
                                 what=f"the event refused and hidden {REFUSED_RECEIVES} times")
                proxy.heal()

                async def settled() -> Job | None:
                    job = await env.store(case.table).get(request_id)
                    return job if job is not None and case.settled(job) else None

                await eventually(settled, timeout_s=90, what="the event applied after the outage")

                async def acknowledged() -> bool:
                    # a job can settle while its event is still hidden by the last deferral
                    # (the file's rows stored, its record write refused): the event is
                    # received again once that delay ends, and deleted
                    return await env.left_after_visibility(queue, VISIBILITY_S) == 0

                await eventually(acknowledged, timeout_s=90,
                                 what="the event deleted from its queue once applied")
            finally:
                worker.shutdown()
                await asyncio.wait_for(task, timeout=20)
    assert await env.left_on(f"{queue}-dlq") == 0, "no valid event dead-lettered"
    # each refused receive hid the event longer: base 2 s doubling per receive,
    # jittered within the top half, so at least 1, 2, 4, ... seconds
    assert all(v >= 2 ** i for i, v in enumerate(hidden())), hidden()
