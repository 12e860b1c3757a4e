"""Enrichment end to end against the emulator: intake → table → stream → workflow → topic."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from services.enrichment.service import build
from shared.metrics import STREAM_RECORDS
from shared.pipeline.jobs import Status
from tests.helpers import Env, eventually, job_in, running
from tools.demo import generate_messages

pytestmark = pytest.mark.own_stack(
    "runs the enrichment workers over the "
    "whole intake queue and counts executions")

EXAMPLES = resources.files("shared.contracts").joinpath("examples")


def example(name: str) -> str:
    return EXAMPLES.joinpath(name).read_text()


async def subscribe_probe(env: Env) -> str:
    """A queue of our own on the enriched topic, to see what enrichment published."""
    sqs, sns = env.clients.sqs, env.clients.sns
    url = (await sqs.create_queue(QueueName=f"{env.settings.prefix}-probe"))["QueueUrl"]
    arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
           )["Attributes"]["QueueArn"]
    topic = (await sns.create_topic(Name=env.names.enriched_topic))["TopicArn"]
    await sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                        Attributes={"RawMessageDelivery": "true"})
    return f"{env.settings.prefix}-probe"


async def test_message_in_completed_and_advice_published(env: Env) -> None:
    probe = await subscribe_probe(env)
    async with running(env, build):
        await env.send(example("settled-usd-ach.json"))
        job = await job_in(env.store(), "REQ-2026-000001", "COMPLETED")
    assert job.attempt == 1
    assert job.raw["execution_name"] == "REQ-2026-000001-a1"
    assert not {"running_job", "retry_job", "failed_job"} & set(job.raw)
    advice = json.loads(job.raw["advice"])
    assert advice["amount"] == "1250.00" and advice["payee"]["name"] == "Ada Lovelace Books LLC"
    assert [i["invoice_id"] for i in advice["invoices"]] == ["INV-1001", "INV-1002"]

    published = await env.drain(probe)
    assert len(published) == 1
    body = json.loads(published[0]["Body"])
    assert body["request_id"] == "REQ-2026-000001" and body["purpose"] == "royalty"
    attrs = {k: v["StringValue"] for k, v in published[0]["MessageAttributes"].items()}
    # tracing is off here, yet the message carries the job's trace (shared/tracing.py)
    assert attrs.pop("traceparent").split("-")[1] == job.raw["traceparent"].split("-")[1]
    assert attrs == {"payee_type": "author", "purpose": "royalty", "country": "US",
                     "channel": "email", "partner_status": "SETTLED"}


async def test_extras_survive_into_the_advice(env: Env) -> None:
    async with running(env, build):
        await env.send(example("settled-eur-sepa-extra-fields.json"))
        job = await job_in(env.store(), "REQ-2026-000002", "COMPLETED")
    advice = json.loads(job.raw["advice"])
    assert advice["extras"] == {"end_to_end_id": "E2E-5Q1X", "charge_bearer": "SLEV"}
    assert advice["amount"] == "1234.56" and advice["currency"] == "EUR"


async def test_duplicate_delivery_starts_one_execution(env: Env) -> None:
    body = example("settled-jpy-wire.json")
    async with running(env, build):
        await env.send(body)
        await job_in(env.store(), "REQ-2026-000003", "COMPLETED")
        await env.send(body, body)
        await eventually(lambda: _queue_empty(env, env.names.remittance_events),
                         what="duplicates acknowledged")
    job = await env.store().require("REQ-2026-000003")
    assert job.status is Status.COMPLETED and job.attempt == 1
    executions = await env.executions(env.names.enrichment_sm)
    assert [e["name"] for e in executions] == ["REQ-2026-000003-a1"]
    assert await env.drain(env.names.dlq(env.names.remittance_events)) == []


async def test_conflicting_duplicate_is_quarantined_and_item_untouched(env: Env) -> None:
    original = json.loads(example("settled-usd-ach.json"))
    conflicting = dict(original, amount="1000.00", invoice_ids=["INV-1001"])
    async with running(env, build):
        await env.send(original)
        before = await job_in(env.store(), "REQ-2026-000001", "COMPLETED")
        await env.send(conflicting)
        dead = await eventually(lambda: _dlq(env), what="quarantined message")
    attrs = _attributes(dead[0])
    assert attrs["remitflow.reason"] == "conflicting_duplicate"
    assert attrs["remitflow.request_id"] == "REQ-2026-000001"
    assert json.loads(dead[0]["Body"])["amount"] == "1000.00"
    after = await env.store().require("REQ-2026-000001")
    assert after.version == before.version and after.raw["payload"] == before.raw["payload"]


async def test_invalid_messages_go_to_dlq_with_reasons_neighbours_unaffected(env: Env) -> None:
    good = generate_messages(3, prefix="REQ-NEIGHBOUR")
    batch: list[str | dict[str, Any]] = [
        good[0], example("invalid-float-amount.json"), good[1],
        example("invalid-jpy-fraction.json"), example("invalid-truncated.txt"), good[2], "",
    ]
    async with running(env, build):
        await env.send(*batch)
        for message in good:
            await job_in(env.store(), message["request_id"], "COMPLETED")
        dead = await eventually(lambda: _dlq(env, at_least=4), what="4 quarantined messages")
    reasons = sorted(_attributes(m)["remitflow.reason"] for m in dead)
    assert reasons == ["empty_body", "invalid_json", "schema", "schema"]
    details = " ".join(_attributes(m)["remitflow.detail"] for m in dead)
    assert "decimal string" in details and "fraction digits" in details
    assert all(_attributes(m)["remitflow.source_queue"] == env.names.remittance_events
               for m in dead)
    assert await _queue_empty(env, env.names.remittance_events)


async def test_unknown_payee_is_rejected(env: Env) -> None:
    message = dict(generate_messages(1)[0], request_id="REQ-NOBODY", payee_id="PAYEE-9999")
    async with running(env, build):
        await env.send(message)
        job = await job_in(env.store(), "REQ-NOBODY", "REJECTED")
    assert "UnknownPayee" in job.raw["last_error"]
    assert not {"running_job", "retry_job", "failed_job"} & set(job.raw)


async def test_amount_mismatch_is_rejected(env: Env) -> None:
    message = dict(generate_messages(1)[0], request_id="REQ-SHORT", amount="1.00",
                   currency="USD", payee_id="PAYEE-0001", invoice_ids=["INV-1001"])
    async with running(env, build):
        await env.send(message)
        job = await job_in(env.store(), "REQ-SHORT", "REJECTED")
    assert "AmountMismatch" in job.raw["last_error"]


async def test_transient_failure_goes_to_retry_pending(env: Env) -> None:
    flaky = env.with_settings(faults="transient-always:REQ-FLAKY-.*")
    message = dict(generate_messages(1)[0], request_id="REQ-FLAKY-1")
    async with running(flaky, build):
        await env.send(message)
        job = await job_in(env.store(), "REQ-FLAKY-1", "RETRY_PENDING")
    assert job.raw["retry_job"].startswith("s") and int(job.raw["next_attempt_at"]) > 0
    assert "running_job" not in job.raw
    assert "Transient" in job.raw["last_error"] or "injected" in job.raw["last_error"]


async def test_restarted_starter_does_not_start_again(env: Env) -> None:
    messages = generate_messages(4, prefix="REQ-RESTART")
    async with running(env, build):
        await env.send(*messages)
        for m in messages:
            await job_in(env.store(), m["request_id"], "COMPLETED")
    first = await env.executions(env.names.enrichment_sm)
    late = dict(generate_messages(1, prefix="REQ-LATE")[0])
    inserts = STREAM_RECORDS.labels(table=env.names.remittances, event="INSERT")
    before = inserts._value.get()
    async with running(env, build):
        # the restarted reader resumes after its checkpoint: it starts the new job only
        await env.send(late)
        await job_in(env.store(), late["request_id"], "COMPLETED")
    second = await env.executions(env.names.enrichment_sm)
    assert inserts._value.get() - before == 1, "replayed records before the checkpoint"
    assert len(first) == 4
    assert sorted(e["name"] for e in second) == sorted(
        [e["name"] for e in first] + [f"{late['request_id']}-a1"])


async def _queue_empty(env: Env, queue: str) -> bool:
    attrs = await env.clients.sqs.get_queue_attributes(
        QueueUrl=await env.queue_url(queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    a = attrs["Attributes"]
    return a.get("ApproximateNumberOfMessages") == "0" and \
        a.get("ApproximateNumberOfMessagesNotVisible") == "0"


_seen: dict[str, list[Any]] = {}


async def _dlq(env: Env, at_least: int = 1) -> list[Any] | None:
    key = env.settings.prefix
    _seen.setdefault(key, []).extend(await env.drain(env.names.dlq(env.names.remittance_events),
                                                     wait_s=0))
    return _seen[key] if len(_seen[key]) >= at_least else None


def _attributes(message: Any) -> dict[str, str]:
    return {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}


async def test_the_task_worker_publishes_and_the_workflow_takes_two_states(env: Env) -> None:
    """No Publish state: the advice is published before the task is answered, and the
    workflow enters only Process and MarkCompleted (docs/capacity.md, "Levers")."""
    probe = await subscribe_probe(env)
    async with running(env, build):
        await env.send(example("settled-usd-ach.json"))
        await job_in(env.store(), "REQ-2026-000001", "COMPLETED")
    assert len(await env.drain(probe)) == 1
    execution = next(e for e in await env.executions(env.names.enrichment_sm)
                     if e["name"] == "REQ-2026-000001-a1")
    history = await env.clients.sfn.get_execution_history(
        executionArn=execution["executionArn"], maxResults=1000)
    entered = [e["stateEnteredEventDetails"]["name"] for e in history["events"]
               if e["type"].endswith("StateEntered")]
    assert entered == ["Process", "MarkCompleted"]
