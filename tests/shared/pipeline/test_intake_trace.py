"""A partner's ``traceparent`` is linked, never adopted: the job carries a trace of ours.

Tracing off (the default): the enrichment intake in-process over the emulator.
With tracing on, ``tests/shared/test_tracing.py`` checks the span link and the attribute.
"""

from __future__ import annotations

import json
import secrets
import uuid

import pytest

from tests.helpers import Env, job_in, message, running
from tools.stack import builder

pytestmark = pytest.mark.own_stack("runs the enrichment workers over the whole intake queue")


async def test_the_stored_context_is_ours_not_the_partners(env: Env) -> None:
    request_id = f"REQ-{uuid.uuid4().hex}"
    partner_trace = secrets.token_hex(16)
    given = f"00-{partner_trace}-{secrets.token_hex(8)}-01"  # "sample me", says the partner
    async with running(env, builder("enrichment")):
        await env.clients.sqs.send_message(
            QueueUrl=await env.queue_url(env.names.remittance_events),
            MessageBody=json.dumps(message(request_id)),
            MessageAttributes={"traceparent": {"DataType": "String", "StringValue": given}})
        job = await job_in(env.store(), request_id, "RUNNING", "COMPLETED", "RETRY_PENDING",
                           "REJECTED")
    _, trace_id, span_id, flags = job.raw["traceparent"].split("-")
    assert trace_id != partner_trace and len(trace_id) == 32 and len(span_id) == 16
    assert flags == "00"  # tracing off: an unsampled root of ours, whatever the partner asked
