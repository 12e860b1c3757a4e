"""The hand-off check: a COMPLETED remittance with no notification job is sent again.

The fault is one a real deployment meets: the advice was published, but the
message never became a notification job (a subscription or queue policy broken
for a while, a purged queue). Here the published messages are taken off the
notification intake queue and deleted before the notification service runs.
"""

from __future__ import annotations

import json

import pytest

from services.enrichment.service import build as build_enrichment
from services.notification.service import build as build_notification
from services.sweeper.service import build_sweeper
from shared.metrics import HANDOFF_REPAIRS
from shared.operations.sweep import Sweeper, SweepReport
from shared.pipeline.jobs import HANDOFF_AT, HANDOFF_INDEX, HANDOFF_SHARD, JobStore, Status
from tests.helpers import Env, emails_to, eventually, example, job_in, running
from tools.stack import KINDS

pytestmark = pytest.mark.own_stack(
    "drains the notification queue and checks "
    "the hand-off window of the table")


def message(request_id: str) -> dict[str, object]:
    """The ACH example (payee notified by e-mail) under its own request id."""
    return dict(json.loads(example("settled-usd-ach.json")), request_id=request_id)


async def _lose_advices(env: Env) -> list[str]:
    """Delete every message on the notification intake queue; returns their request ids."""
    url = await env.queue_url(env.names.notification_events)
    lost = await env.drain(env.names.notification_events)
    for msg in lost:
        await env.clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
    return [json.loads(m["Body"])["request_id"] for m in lost]


async def _sweeper(env: Env, **settings: object) -> Sweeper:
    return await build_sweeper(env.with_settings(handoff_grace_s=0.01, **settings).settings,
                               env.clients, KINDS)


async def _sweep(sweeper: Sweeper) -> SweepReport:
    report = await sweeper.sweep_once(force=True)
    assert report.aborted is None
    return report


def _repairs(table: str, outcome: str) -> float:
    return float(HANDOFF_REPAIRS.labels(table=table, outcome=outcome)._value.get())


async def test_a_lost_advice_is_published_again_and_notified_once(env: Env) -> None:
    remittances = env.names.table("remittances")
    async with running(env, build_enrichment):
        await env.send(message("REQ-HANDOFF-1"), message("REQ-HANDOFF-2"))
        for rid in ("REQ-HANDOFF-1", "REQ-HANDOFF-2"):
            await job_in(env.store(), rid, "COMPLETED")
    lost = await eventually(lambda: _lose_advices(env), what="the published advices")
    assert sorted(lost) == ["REQ-HANDOFF-1", "REQ-HANDOFF-2"]
    # One of the two did reach the notification side (its job exists): not sent again.
    async with running(env, build_notification):
        url = await env.queue_url(env.names.notification_events)
        completed = await env.store().require("REQ-HANDOFF-2")
        await env.clients.sqs.send_message(QueueUrl=url, MessageBody=completed.raw["advice"])
        await job_in(env.store("notifications"), "REQ-HANDOFF-2", "SENT", timeout_s=45)
    before = _repairs(remittances, "republished")

    sweeper = await _sweeper(env)
    report = await _sweep(sweeper)

    check = report.handoff[remittances]
    assert check.checked == 2
    assert check.repaired_ids == ["REQ-HANDOFF-1"]
    assert _repairs(remittances, "republished") == before + 1
    async with running(env, build_notification):
        job = await job_in(env.store("notifications"), "REQ-HANDOFF-1", "SENT", timeout_s=45)
    assert job.attempt == 1
    executions = [e["name"] for e in await env.executions(env.names.notification_sm)]
    assert sorted(executions) == ["REQ-HANDOFF-1-a1", "REQ-HANDOFF-2-a1"]
    assert [m["id"] for m in emails_to(env, "ap@ada-books.example")
            if m["id"] == job.raw["delivery_id"]] == [job.raw["delivery_id"]]
    # Repaired jobs are checked again after another grace period: now present, so no
    # second republish; and the window moved on, so the other is not read again.
    again = (await _sweep(sweeper)).handoff[remittances]
    assert (again.checked, again.repaired) == (1, 0)
    assert _repairs(remittances, "republished") == before + 1
    assert (await _sweep(sweeper)).handoff[remittances].checked == 0


async def test_nothing_is_republished_while_the_grace_period_runs(env: Env) -> None:
    async with running(env, build_enrichment):
        await env.send(message("REQ-HANDOFF-GRACE"))
        await job_in(env.store(), "REQ-HANDOFF-GRACE", "COMPLETED")
    await eventually(lambda: _lose_advices(env), what="the published advice")
    sweeper = await build_sweeper(env.with_settings(handoff_grace_s=3600).settings,
                                  env.clients, KINDS)
    report = (await _sweep(sweeper)).handoff[env.names.table("remittances")]
    assert (report.checked, report.repaired) == (0, 0)
    assert await env.drain(env.names.notification_events, wait_s=0.5) == []


async def test_a_subscriber_that_never_takes_it_is_given_up_on(env: Env) -> None:
    remittances = env.names.table("remittances")
    async with running(env, build_enrichment):
        await env.send(message("REQ-HANDOFF-GIVEUP"))
        await job_in(env.store(), "REQ-HANDOFF-GIVEUP", "COMPLETED")
    await eventually(lambda: _lose_advices(env), what="the published advice")
    sweeper = await _sweeper(env, handoff_max_repairs=2)
    gave_up = _repairs(remittances, "gave_up")
    outcomes = []
    for _ in range(3):
        outcomes.append((await _sweep(sweeper)).handoff[remittances])
        if outcomes[-1].repaired:
            await eventually(lambda: _lose_advices(env), what="the republished advice",
                             timeout_s=10)
    assert [(o.repaired, o.gave_up) for o in outcomes] == [(1, 0), (1, 0), (0, 1)]
    assert _repairs(remittances, "gave_up") == gave_up + 1
    job = await env.store().require("REQ-HANDOFF-GIVEUP")
    assert job.raw["handoff_repairs"] == 2


async def test_every_success_write_enters_the_handoff_index(env: Env) -> None:
    """The workflow's MarkCompleted and the Python settlers (reconcile, status events)
    both put a published kind's job in the index; other kinds' tables have none."""
    table = env.names.table("remittances")
    store = JobStore(env.clients.dynamodb, table, shards=env.settings.retry.shards,
                     handoff=True)
    await store.create("REQ-HANDOFF-SETTLED", "{}", "x")
    job = await store.require("REQ-HANDOFF-SETTLED")
    job = await store.transition(job, Status.RUNNING, sort_value=1)
    job = await store.transition(job, Status.COMPLETED, set_={"advice": "{}"})
    assert job.raw[HANDOFF_SHARD].startswith("s") and job.raw[HANDOFF_AT]

    async def indexed() -> list[str]:
        resp = await env.clients.dynamodb.query(
            TableName=table, IndexName=HANDOFF_INDEX,
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": HANDOFF_SHARD},
            ExpressionAttributeValues={":pk": {"S": job.raw[HANDOFF_SHARD]}})
        return [i["request_id"]["S"] for i in resp["Items"]]

    assert "REQ-HANDOFF-SETTLED" in await indexed()
    desc = (await env.clients.dynamodb.describe_table(TableName=table))["Table"]
    index = next(g for g in desc["GlobalSecondaryIndexes"] if g["IndexName"] == HANDOFF_INDEX)
    assert index["Projection"]["ProjectionType"] == "KEYS_ONLY"
    notifications = (await env.clients.dynamodb.describe_table(
        TableName=env.names.table("notifications")))["Table"]
    assert HANDOFF_INDEX not in {g["IndexName"] for g in notifications["GlobalSecondaryIndexes"]}
