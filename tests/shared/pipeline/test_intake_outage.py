"""The DLQ means "read the reason": a DynamoDB outage sends nothing there.

DynamoDB is made to throttle and fail (from outside the process, by
``tests/faultproxy.py``) for every intake write while valid messages arrive: each is
received (and refused) more times than the old redrive limit (5 receives) allowed, none ends in the
DLQ, and all are stored once the outage ends. Invalid ones — deep JSON included —
go to the DLQ at once, with their reason.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.faultproxy import Fault, FaultProxy
from tests.helpers import Env, eventually
from tools.demo import generate_messages
from tools.procs import service_process

pytestmark = pytest.mark.own_stack("breaks DynamoDB for its intake through a fault proxy")

RECEIVES = 7  # beyond the old maxReceiveCount of 5


@contextmanager
def enrichment(env: Env, endpoint: str) -> Iterator[subprocess.Popen[bytes]]:
    with service_process("enrichment", env.settings.prefix, {
            "AWS_ENDPOINT_URL": endpoint, "REMITFLOW_RECEIVE_WAIT_S": "1",
            "REMITFLOW_VISIBILITY_TIMEOUT_S": "5", "REMITFLOW_AWS_MAX_ATTEMPTS": "1",
            "REMITFLOW_INTAKE_RETRY_BASE_S": "1", "REMITFLOW_INTAKE_RETRY_CAP_S": "2"},
            log=env.log_for("enrichment")) as p:
        yield p.proc


async def test_dynamodb_outage_backs_off_and_loses_nothing(env: Env) -> None:
    good = generate_messages(4, prefix="REQ-OUTAGE")
    ids = [g["request_id"] for g in good]
    deep = "[" * 100_000 + "]" * 100_000
    table = env.names.remittances
    async with FaultProxy(env.endpoint) as proxy:
        proxy.fail(Fault("DynamoDB_20120810.PutItem", body=rf'"TableName":\s*"{table}"'))
        proxy.watch("AmazonSQS.ReceiveMessage")
        with enrichment(env, proxy.endpoint):
            await env.send(*good, deep, '{"request_id": "REQ-OUTAGE-BAD"}')

            async def received_enough() -> bool:
                return all(proxy.seen("AmazonSQS.ReceiveMessage", i) >= RECEIVES
                           for i in ids) and all(proxy.refusals(i) for i in ids)

            await eventually(received_enough, timeout_s=90,
                             what=f"every valid message received {RECEIVES} times")
            dlq = env.names.dlq(env.names.remittance_events)
            dead = await eventually(lambda: env.drain(dlq, wait_s=0), what="invalid ones in DLQ")
            proxy.heal()

            async def all_stored() -> bool:
                return all([await env.store().get(i) is not None for i in ids])

            await eventually(all_stored, timeout_s=60, what="every valid message stored")
        dead += await env.drain(dlq, wait_s=1)
    reasons = sorted(m["MessageAttributes"]["remitflow.reason"]["StringValue"] for m in dead)
    assert reasons == ["schema", "too_deep"], reasons
    assert not {json.loads(m["Body"]).get("request_id") for m in dead
                if m["Body"].startswith("{")} & set(ids), "a valid message ended in the DLQ"
