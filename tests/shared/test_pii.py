"""Partner extras travel on only by allowlist; the rest stays on the stored payload."""

from __future__ import annotations

import json

import pytest

from services.enrichment.service import build
from tests.helpers import Env, eventually, job_in, running
from tools.demo import generate_messages

pytestmark = pytest.mark.own_stack("runs the enrichment workers over the whole intake queue")

PRIVATE = {"payer_name": "Grace Hopper", "payer_iban": "DE44500105175407324931",
           "payer_address": "1 Main St, Springfield"}


async def _probe(env: Env) -> str:
    """A queue of our own on the enriched topic, to see what enrichment published."""
    sqs, sns = env.clients.sqs, env.clients.sns
    name = f"{env.settings.prefix}-pii-probe"
    url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
    arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
           )["Attributes"]["QueueArn"]
    topic = (await sns.create_topic(Name=env.names.enriched_topic))["TopicArn"]
    await sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                        Attributes={"RawMessageDelivery": "true"})
    return name


async def _run(env: Env, request_id: str) -> tuple[dict[str, object], dict[str, object],
                                                   dict[str, object]]:
    probe = await _probe(env)
    message = dict(generate_messages(1, prefix=request_id)[0], end_to_end_id="E2E-77",
                   **PRIVATE)
    async with running(env, build):
        await env.send(message)
        job = await job_in(env.store(), message["request_id"], "COMPLETED")
    published = await eventually(lambda: env.drain(probe), what="advice published")
    return json.loads(job.raw["advice"]), json.loads(published[0]["Body"]), \
        json.loads(job.raw["payload"])


async def test_only_allowlisted_extras_reach_the_advice(env: Env) -> None:
    stored, sent, payload = await _run(env, "REQ-PII-A")
    for advice in (stored, sent):
        assert advice["extras"] == {"end_to_end_id": "E2E-77"}
        text = json.dumps(advice)
        for value in PRIVATE.values():
            assert value not in text, "a private extra travelled on"
    assert {k: payload[k] for k in PRIVATE} == PRIVATE, "the stored payload keeps everything"


async def test_an_empty_allowlist_sends_no_extras(env: Env) -> None:
    stored, sent, _ = await _run(env.with_settings(advice_extra_fields=""), "REQ-PII-B")
    assert stored["extras"] == {} and sent["extras"] == {}
