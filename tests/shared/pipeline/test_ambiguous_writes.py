"""Job writes whose answer was lost: the write committed, the proxy in front of the
emulator answered 500, botocore retried, the retry failed its version condition.
The writer must recognise its own write (its write token) instead of reading it as
"someone else won". One test per write kind; the shard lease writes are in
tests/shared/stream/test_stream_faults.py."""

from __future__ import annotations

import re

import httpx
import pytest

from shared.aws.emulator import sent_emails
from tests.faultproxy import Fault, FaultProxy
from tests.helpers import (
    Env,
    eventually,
    job_in,
    names_of,
    retrying,
    running,
    service_process,
)
from tools.demo import generate_messages
from tools.stack import builder

pytestmark = pytest.mark.own_stack("breaks DynamoDB for its workers through a fault proxy")


def recognised(metrics: str) -> float:
    return sum(float(v) for v in re.findall(
        r"^remitflow_job_writes_recognised_total\{[^}]*\} (\S+)$", metrics, re.M))


async def test_a_redrive_whose_running_write_was_lost_still_starts_its_attempt(
        env: Env) -> None:
    """Without recognition: VersionConflict, the job left RUNNING with no execution
    and an attempt burned until the reconcile (18 minutes by default)."""
    table = env.names.remittances
    job = await retrying(env.store(), "REQ-AMB-REDRIVE", attempt=1)
    fault = Fault("DynamoDB_20120810.UpdateItem", kinds=("lost_response",), times=1,
                  body=rf'(?s)(?=.*"TableName":\s*"{table}")(?=.*"RUNNING")')
    async with FaultProxy(env.endpoint) as proxy:
        proxy.fail(fault)
        with service_process(env, "sweeper", AWS_ENDPOINT_URL=proxy.endpoint,
                             REMITFLOW_SWEEPER_INTERVAL_S="1") as (url, _proc):
            await eventually(lambda: _true(proxy.hits.get(fault, 0) == 1), timeout_s=30,
                             what="the re-drive's RUNNING write answered 500 after it committed")

            async def started() -> bool:
                return "REQ-AMB-REDRIVE-a2" in await names_of(env, env.names.enrichment_sm)

            await eventually(started, timeout_s=30, what="attempt 2 started")
            async with httpx.AsyncClient(base_url=url) as http:
                metrics = (await http.get("/metrics")).text
    after = await env.store().require("REQ-AMB-REDRIVE")
    assert after.attempt == 2 and after.version >= job.version + 1
    assert recognised(metrics) >= 1


async def test_an_email_intent_whose_write_was_lost_is_sent_once(env: Env) -> None:
    """Without recognition: the intent looks like someone else's, FAILED 'outcome
    unknown' although nothing was sent."""
    table = env.names.notifications
    message = generate_messages(1, prefix="REQ-AMB-MAIL")[0]
    before = len(sent_emails(env.endpoint))
    fault = Fault("DynamoDB_20120810.UpdateItem", kinds=("lost_response",), times=1,
                  body=rf'(?s)(?=.*"TableName":\s*"{table}")(?=.*"delivery_intent")')
    async with FaultProxy(env.endpoint) as proxy:
        proxy.fail(fault)
        async with running(env, builder("enrichment")):
            with service_process(env, "notification", AWS_ENDPOINT_URL=proxy.endpoint) as (
                    url, _proc):
                await env.send(message)
                job = await job_in(env.store("notifications"), str(message["request_id"]),
                                   "SENT", "FAILED", timeout_s=60)
                async with httpx.AsyncClient(base_url=url) as http:
                    metrics = (await http.get("/metrics")).text
    assert proxy.hits.get(fault) == 1, "the intent write was the one answered 500"
    assert job.status.value == "SENT", job.public()
    assert len(sent_emails(env.endpoint)) == before + 1, "exactly one e-mail"
    assert recognised(metrics) >= 1


async def _true(value: bool) -> bool:
    return value
