"""The data lifecycle end to end: finish, expire, archive, and intake still idempotent.

The three services' workers run in-process on a stack of their own; DynamoDB's TTL
deletions come from the emulator's expirer (``DELETE /_aws/dynamodb/expired``, with a
clock two days ahead), so the stream carries ``REMOVE`` records made by the service,
as on AWS (``docs/architecture.md``, "Data lifecycle").
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY

from shared.aws.dynamo import to_item
from shared.aws.emulator_ttl import trigger
from shared.operations.archive import Archive
from shared.pipeline.jobs import JobStore, Status, content_hash
from shared.pipeline.lifecycle import TOMBSTONES, Tombstones
from tests.helpers import (
    CONSOLE_TOKEN,
    Env,
    console,
    console_sign_in,
    emails_to,
    eventually,
    job_in,
    running,
)
from tools.stack import builder

pytestmark = pytest.mark.own_stack(
    "runs every service's workers over whole queues and expires whole tables")

DAY = 86400


async def own_payee(env: Env, tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A payee and invoice of this test's own (its e-mails are countable)."""
    payee = {"payee_id": f"PAYEE-{tag}", "name": f"Grace Hopper {tag}",
             "email": f"grace-{tag.lower()}@example.com", "payee_type": "individual",
             "country": "US", "locale": "en-US", "channel": "email", "account_last4": "4242"}
    invoice = {"invoice_id": f"INV-{tag}", "payee_id": payee["payee_id"], "amount": "100.00",
               "currency": "USD", "description": "Consulting", "purpose": "invoice_payment"}
    for table, row in ((env.names.payees, payee), (env.names.invoices, invoice)):
        await env.clients.dynamodb.put_item(TableName=table, Item=to_item(row))
    message = {"schema_version": "1", "request_id": f"REQ-{tag}", "payment_id": f"PAY-{tag}",
               "partner": "FIRSTBANK", "status": "SETTLED", "payment_method": "ACH",
               "amount": "100.00", "currency": "USD", "payee_id": payee["payee_id"],
               "invoice_ids": [invoice["invoice_id"]], "value_date": "2026-11-24",
               "partner_reference": f"ACH-{tag}", "occurred_at": "2026-11-24T14:03:11Z"}
    return payee, message


async def tombstone(env: Env, short: str, request_id: str) -> dict[str, Any] | None:
    stones = Tombstones(env.clients.dynamodb, env.names.name(TOMBSTONES))
    return await stones.get(env.names.table(short), request_id)


async def test_finished_jobs_expire_archive_once_and_stay_idempotent(env: Env) -> None:
    env = env.with_settings(retention_days="2,notification=1")
    tag = uuid.uuid4().hex[:8].upper()
    payee, message = await own_payee(env, tag)
    request_id = message["request_id"]
    archive = Archive(env.clients.s3, env.settings.archive_bucket_name)
    async with running(env, builder("enrichment")), running(env, builder("notification")), \
            running(env, builder("sweeper")):
        before = time.time()
        await env.send(message)
        done = await job_in(env.store(), request_id, "COMPLETED")
        sent = await job_in(env.store("notifications"), request_id, "SENT")
        now = time.time()
        # retention per kind (counted from the final attempt's start)
        assert before + 2 * DAY <= int(done.raw["expires_at"]) <= now + 2 * DAY + 1
        assert before + DAY <= int(sent.raw["expires_at"]) <= now + DAY + 1
        for short in ("remittances", "notifications"):   # written at finish, keys only
            stone = await eventually(lambda s=short: tombstone(env, s, request_id),  # type: ignore[misc]
                                     what=f"{short} tombstone")
            assert not {"payload", "advice", "history", "email"} & set(stone)
        assert len(emails_to(env, payee["email"])) == 1

        # a caller's DeleteItem of a finished job is not an expiry: nothing archived
        deleted = f"{request_id}-DELETED"
        await env.clients.dynamodb.put_item(TableName=env.names.remittances, Item=to_item(
            {**done.raw, "request_id": deleted}))
        await env.clients.dynamodb.delete_item(TableName=env.names.remittances,
                                               Key={"request_id": {"S": deleted}})
        await eventually(lambda: asyncio.sleep(0, _not_expiry(env) >= 1),
                         what="the deletion seen by the archiver")

        later = now + 3 * DAY
        for short in ("remittances", "notifications"):
            assert await asyncio.to_thread(trigger, env.endpoint, env.names.table(short),
                                           later) == 1
        for short in ("remittances", "notifications"):
            found = await eventually(lambda s=short: archive.find(s, request_id),  # type: ignore[misc]
                                     what=f"{short} archived")
            key, lines = found
            assert key.startswith(f"{short}/dt={done.raw['updated_at'][:10]}/")
            assert len(lines) == 1 and lines[0]["job"]["request_id"] == request_id
        assert await env.store().get(request_id) is None
        assert await env.store("notifications").get(request_id) is None
        record = (await archive.find("remittances", request_id) or ("", []))[1][0]["job"]
        assert record["status"] == "COMPLETED" and record["advice"]["amount"] == "100.00"
        assert record["history"], "the history travels with the job"

        await env.send(message)                               # re-sent, unchanged
        await eventually(lambda: _empty(env, env.names.remittance_events),
                         what="the re-sent message acknowledged")
        changed = dict(message, amount="99.00")               # re-sent, changed
        await env.send(changed)
        dead = await eventually(lambda: env.drain(env.names.dlq(env.names.remittance_events),
                                                  wait_s=0), what="the conflict quarantined")
    assert await env.store().get(request_id) is None, "no new job for an expired id"
    assert [e["name"] for e in await env.executions(env.names.enrichment_sm)] \
        == [f"{request_id}-a1"]
    assert len(emails_to(env, payee["email"])) == 1, "no second e-mail"
    attrs = {k: v["StringValue"] for k, v in dead[0]["MessageAttributes"].items()}
    assert attrs["remitflow.reason"] == "conflicting_duplicate"
    assert json.loads(dead[0]["Body"])["amount"] == "99.00"
    keys = await archive.keys()
    assert sorted(k.split("/")[0] for k in keys) == ["notifications", "remittances"], \
        "each expired job archived once, the deleted one not at all"

    # an operator finds it: the CLI and the console's timeline
    cli = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "tools.cli", "archive", "get", request_id],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "REMITFLOW_PREFIX": env.settings.prefix})
    assert cli.returncode == 0, cli.stderr[-2000:]
    shown = json.loads(cli.stdout)
    assert shown["remittances"]["job"]["status"] == "COMPLETED"
    assert shown["notifications"]["job"]["status"] == "SENT"
    async with console(env) as http:
        await console_sign_in(http)
        page = await http.get(f"/console/requests/{request_id}")
    assert page.status_code == 200
    assert 'id="archived-remittances"' in page.text and 'id="archived-notifications"' in page.text
    assert 'id="redrive-remittances"' not in page.text


async def test_a_redriven_job_loses_its_expiry_until_it_finishes_again(env: Env) -> None:
    store = JobStore(env.clients.dynamodb, env.names.remittances, retention_s=DAY)
    request_id = f"REQ-REDRIVE-{uuid.uuid4().hex[:8]}"
    job = await store.create(request_id, "{}", content_hash("{}"))
    assert job is not None and "expires_at" not in job.raw
    job = await store.transition(job, Status.RUNNING, set_={"attempt": 1})
    assert "expires_at" not in job.raw, "unfinished jobs never expire"
    job = await store.transition(job, Status.REJECTED)
    assert int(job.raw["expires_at"]) >= time.time() + DAY - 5
    job = await store.transition(job, Status.RUNNING, set_={"attempt": 2})
    assert "expires_at" not in job.raw, "a re-driven job no longer expires"
    job = await store.transition(job, Status.COMPLETED)
    assert int(job.raw["expires_at"]) >= time.time() + DAY - 5


def _not_expiry(env: Env) -> float:
    return REGISTRY.get_sample_value("remitflow_archived_total", {
        "table": env.names.remittances, "outcome": "not_expiry"}) or 0.0


async def _empty(env: Env, queue: str) -> bool:
    return await env.left_on(queue) == 0


async def test_erasure_leaves_no_personal_data_anywhere(env: Env) -> None:
    env = env.with_settings(retention_days="2")
    tag = uuid.uuid4().hex[:8].upper()
    payee, message = await own_payee(env, tag)
    payee["webhook_url"] = f"https://hooks-{tag.lower()}.example/t/secret-token"
    await env.clients.dynamodb.put_item(TableName=env.names.payees, Item=to_item(payee))
    endpoints = env.names.name("endpoints")
    await env.clients.dynamodb.put_item(TableName=endpoints, Item=to_item(
        {"endpoint_id": f"ep_{tag}", "origin": f"https://hooks-{tag.lower()}.example:443"}))
    archived, finished = message["request_id"] + "-A", message["request_id"] + "-B"
    archive = Archive(env.clients.s3, env.settings.archive_bucket_name)
    async with running(env, builder("enrichment")), running(env, builder("notification")), \
            running(env, builder("sweeper")):
        await env.send(dict(message, request_id=archived), dict(message, request_id=finished))
        for request_id in (archived, finished):
            await job_in(env.store(), request_id, "COMPLETED")
            await job_in(env.store("notifications"), request_id, "SENT")
        for short in ("remittances", "notifications"):
            await eventually(lambda s=short: tombstone(env, s, archived),  # type: ignore[misc]
                             what="tombstone")
            table = env.names.table(short)
            store = JobStore(env.clients.dynamodb, table)
            job = await store.require(finished)       # keep B: only A expires
            await env.clients.dynamodb.update_item(
                TableName=table, Key={"request_id": {"S": finished}},
                UpdateExpression="REMOVE expires_at")
            assert job.raw["expires_at"]
            assert await asyncio.to_thread(trigger, env.endpoint, table,
                                           time.time() + 3 * DAY) == 1
            await eventually(lambda s=short: archive.find(s, archived),  # type: ignore[misc]
                             what=f"{short} archived")
    # a live, unfinished notification of theirs (nothing runs it now)
    sent = await env.store("notifications").require(finished)
    live = f"{message['request_id']}-C"
    assert await env.store("notifications").create(live, sent.raw["payload"], "x") is not None

    async with console(env) as http:
        lookup = await http.get("/console")       # the sweeper app, in-process
        assert lookup.status_code in (200, 303)
        before = await _archived(env, archived)
        assert before["remittances"]["job"]["advice"]["payee"]["name"] == payee["name"]
        answer = await http.post(f"/v1/payees/{payee['payee_id']}/erase",
                                 json={"note": "GDPR art. 17 request #42"},
                                 headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"})
        assert answer.status_code == 200, answer.text
        report = answer.json()
        again = await http.post(f"/v1/payees/{payee['payee_id']}/erase",
                                json={"note": "twice"},
                                headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"})
    assert report["jobs"] == {"remittances": [finished], "notifications": [finished, live]}
    assert report["other"] == [f"{endpoints}/ep_{tag}"]
    assert report["archive"].startswith("data key destroyed")
    assert report["by"].startswith("api token ") and report["note"].startswith("GDPR")
    assert again.status_code == 200 and again.json()["jobs"] == {
        "remittances": [], "notifications": []}

    leaks = [payee["name"], payee["email"], f"hooks-{tag.lower()}", "secret-token"]
    for table in await _tables(env):
        for item in await _scan_all(env, table):
            text = json.dumps(item)
            assert not [s for s in leaks if s in text], (table, text[:500])
            assert '"4242"' not in text.replace("\\", ""), (table, text[:500])
    for key in await archive.keys():
        text = json.dumps(await archive.get(key))
        assert not [s for s in leaks if s in text] and '"4242"' not in text, key
    after = await _archived(env, archived)
    job = after["remittances"]["job"]
    assert job["erased"] is True and job["status"] == "COMPLETED"
    assert job["advice"]["amount"] == "100.00" and job["advice"]["currency"] == "USD"
    assert job["advice"]["payee"]["name"] == "[erased]"
    kept = await env.store().require(finished)
    assert json.loads(kept.raw["advice"])["amount"] == "100.00"
    assert "personal data erased by api token" in " ".join(kept.raw["history"])


async def _archived(env: Env, request_id: str) -> dict[str, Any]:
    cli = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "tools.cli", "archive", "get", request_id],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "REMITFLOW_PREFIX": env.settings.prefix})
    assert cli.returncode == 0, cli.stderr[-2000:]
    found: dict[str, Any] = json.loads(cli.stdout)
    return found


async def _tables(env: Env) -> list[str]:
    out: list[str] = []
    async for page in env.clients.dynamodb.get_paginator("list_tables").paginate():
        out += [t for t in page["TableNames"] if t.startswith(f"{env.settings.prefix}-")]
    return out


async def _scan_all(env: Env, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    async for page in env.clients.dynamodb.get_paginator("scan").paginate(TableName=table):
        items += page["Items"]
    return items
