"""Bad input, all of it: every message ends stored or in the DLQ with a reason; none is lost."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.enrichment.handler import parse_partner_message
from services.enrichment.kind import ENRICHMENT
from shared.metrics import DLQ_MESSAGES
from shared.pipeline.assemble import job_store
from shared.pipeline.intake import Intake, InvalidMessage
from tests.helpers import Env, eventually
from tools.demo import generate_messages

pytestmark = pytest.mark.own_stack("asserts the exact content of the intake's dead-letter queue")

VALID = generate_messages(1, prefix="REQ-PROP")[0]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=10)


@st.composite
def mutated_messages(draw: st.DrawFn) -> str:
    """A valid message with one field removed, replaced or added, or raw garbage."""
    kind = draw(st.sampled_from(["drop", "replace", "add", "text", "truncate"]))
    message: dict[str, Any] = dict(VALID, request_id=f"REQ-PROP-{draw(st.integers(0, 10**6))}")
    if kind == "drop":
        message.pop(draw(st.sampled_from(sorted(message))))
    elif kind == "replace":
        message[draw(st.sampled_from(sorted(message)))] = draw(json_values)
    elif kind == "add":
        message[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
    elif kind == "text":
        return draw(st.text(max_size=200))
    body = json.dumps(message)
    if kind == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    return body


@given(mutated_messages())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_parser_never_raises_anything_but_invalid_message(body: str) -> None:
    try:
        parsed = parse_partner_message(body)
    except InvalidMessage as exc:
        assert exc.reason and exc.detail
    else:
        assert parsed.request_id and parsed.payload == body


INJECTION_IDS = ["'; DROP TABLE remittances; --", "<script>alert(1)</script>", "${jndi:x}",
                 "../../etc/passwd", "REQ 1", "R" * 200]


async def test_hostile_batch_nothing_lost_neighbours_fine(env: Env) -> None:
    good = generate_messages(4, prefix="REQ-HOSTILE")
    hostile: list[str] = [
        "", "null", "[]", '"just a string"', "{", '{"amount": 1e309}',
        json.dumps(dict(good[0], request_id="REQ-HOSTILE-FLOAT", amount=12.5)),
        json.dumps(dict(good[0], request_id="REQ-HOSTILE-NEG", amount="-1.00")),
        json.dumps(dict(good[0], request_id="REQ-HOSTILE-ZERO", amount="0.00")),
        json.dumps(dict(good[0], request_id="REQ-HOSTILE-CUR", currency="XYZ")),
        json.dumps(dict(good[0], request_id="REQ-HOSTILE-CTRL", payee_id="PAY\x07EE")),
        json.dumps(dict(good[0], request_id="REQ-HOSTILE-DUPINV", invoice_ids=["A", "A"])),
        json.dumps({k: v for k, v in good[0].items() if k != "payee_id"}),
        *[json.dumps(dict(good[0], request_id=i)) for i in INJECTION_IDS],
        json.dumps(dict(good[1], request_id="REQ-HOSTILE-BIG", blob="x" * 200_000)),
    ]
    bodies = [*hostile, *(json.dumps(g) for g in good)]
    store = job_store(env.settings, env.clients, ENRICHMENT)
    url = await env.queue_url(env.names.remittance_events)
    dlq = await env.queue_url(env.names.dlq(env.names.remittance_events))
    intake = Intake(sqs=env.clients.sqs, queue_name=env.names.remittance_events, queue_url=url,
                    dlq_url=dlq, store=store, parse=parse_partner_message, wait_s=1)
    before = sum(DLQ_MESSAGES.labels(queue=env.names.remittance_events, reason=r)._value.get()
                 for r in ("schema", "invalid_json", "not_an_object", "empty_body"))
    await env.send(*bodies)
    import asyncio

    task = asyncio.create_task(intake.run())
    stored: list[str] = []

    async def all_accounted() -> bool:
        stored.clear()
        for body in bodies:
            try:
                rid = json.loads(body)["request_id"]
            except Exception:
                continue
            if isinstance(rid, str) and rid not in stored and await store.get(rid) is not None:
                stored.append(rid)
        attrs = await env.clients.sqs.get_queue_attributes(
            QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
        in_dlq = int(attrs["Attributes"]["ApproximateNumberOfMessages"])
        return len(stored) + in_dlq == len(bodies)

    try:
        await eventually(all_accounted, timeout_s=60, what="every message stored or in DLQ")
    finally:
        intake.shutdown()
        await task
    assert sorted(stored) == sorted([g["request_id"] for g in good] + ["REQ-HOSTILE-BIG"])
    big = await store.require("REQ-HOSTILE-BIG")
    assert len(big.raw["payload"]) > 200_000
    after = sum(DLQ_MESSAGES.labels(queue=env.names.remittance_events, reason=r)._value.get()
                for r in ("schema", "invalid_json", "not_an_object", "empty_body"))
    assert after - before == len(hostile) - 1


async def test_payload_over_item_limit_is_quarantined_not_crashing(env: Env) -> None:
    from shared.pipeline.intake import MAX_PAYLOAD_BYTES

    huge = json.dumps(dict(generate_messages(1, prefix="REQ-HUGE")[0],
                           blob="y" * (MAX_PAYLOAD_BYTES + 10)))
    store = job_store(env.settings, env.clients, ENRICHMENT)
    url = await env.queue_url(env.names.remittance_events)
    dlq = await env.queue_url(env.names.dlq(env.names.remittance_events))
    intake = Intake(sqs=env.clients.sqs, queue_name=env.names.remittance_events, queue_url=url,
                    dlq_url=dlq, store=store, parse=parse_partner_message, wait_s=1)
    await env.send(huge)
    import asyncio

    task = asyncio.create_task(intake.run())
    try:
        dead = await eventually(lambda: env.drain(env.names.dlq(env.names.remittance_events),
                                                  wait_s=0), what="oversized message in DLQ")
    finally:
        intake.shutdown()
        await task
    reason = dead[0]["MessageAttributes"]["remitflow.reason"]["StringValue"]
    assert reason == "too_large"
