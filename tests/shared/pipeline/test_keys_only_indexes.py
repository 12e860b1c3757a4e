"""Keys-only sparse indexes and the inlined payload (``docs/indexes.md``).

The indexes hold keys only, so every reader pages keys and reads the items back
(``shared/pipeline/indexes.py``); the enrichment task worker answers a task whose
execution input carried the payload without reading the job item.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from services.enrichment.service import build as enrichment
from services.sweeper.service import build_sweeper
from shared.pipeline import indexes
from shared.pipeline.jobs import Job, Status
from shared.provision.primitives import JOB_INDEXES
from tests.helpers import Env, eventually, job_in, message, running
from tools.stack import KINDS, builder

pytestmark = pytest.mark.own_stack("counts every item the sweeper reads through the indexes")

sweeper_service = builder("sweeper")


async def test_indexes_are_created_keys_only(env: Env) -> None:
    for short in ("remittances", "notifications"):
        desc = await env.clients.dynamodb.describe_table(TableName=env.names.table(short))
        gsis = {g["IndexName"]: g["Projection"] for g in desc["Table"]["GlobalSecondaryIndexes"]
                if g["IndexName"] != "handoff-index"}   # keys only too: test_handoff.py
        assert gsis == {i[0]: {"ProjectionType": "KEYS_ONLY"} for i in JOB_INDEXES}


async def _parked(env: Env, request_id: str, due: int, **extra: Any) -> Job:
    """A job written RETRY_PENDING straight into the table (due at ``due``)."""
    store = env.store()
    created = await store.create(request_id, json.dumps(message(request_id)), "sha",
                                 extra=extra)
    assert created is not None
    return await store.transition(created, Status.RETRY_PENDING, sort_value=due,
                                  set_={"last_error": "test"})


async def test_query_index_reads_items_behind_the_keys(env: Env) -> None:
    store = env.store()
    for n in range(5):
        await _parked(env, f"REQ-KO-{n}", int(time.time()) - 10,
                      partner="acme" if n % 2 else "globex")
    jobs, cursor, scanned = await store.query_index("retry", due_before=int(time.time()))
    assert sorted(j.request_id for j in jobs) == [f"REQ-KO-{n}" for n in range(5)]
    assert cursor is None and scanned == 5
    assert all(j.status is Status.RETRY_PENDING and "payload" in j.raw for j in jobs)
    # a filter a keys-only index cannot apply is applied to the items read
    acme, _, read = await store.query_index("retry", where={"partner": "acme"})
    assert sorted(j.request_id for j in acme) == ["REQ-KO-1", "REQ-KO-3"] and read == 5
    # paging keeps its position in the index
    first, cursor, _ = await store.query_index("retry", limit=2)
    rest, end, _ = await store.query_index("retry", limit=10, cursor=cursor)
    assert len(first) == 2 and end is None
    assert {j.request_id for j in first + rest} == {f"REQ-KO-{n}" for n in range(5)}
    assert await store.count_index("retry") == (5, 5)


async def test_a_job_that_left_the_state_is_not_listed() -> None:
    row = {"request_id": "r", "retry_job": "s1", "next_attempt_at": 10}
    assert indexes.still_in(row, "retry", 10) and not indexes.still_in(row, "retry", 9)
    assert not indexes.still_in({"request_id": "r"}, "retry", None)


async def test_a_sweep_redrives_a_due_job_through_the_keys_only_index(env: Env) -> None:
    await _parked(env, "REQ-KO-DUE", int(time.time()) - 5)
    async with running(env, enrichment), running(env, sweeper_service):
        job = await job_in(env.store(), "REQ-KO-DUE", "COMPLETED", timeout_s=45)
    assert job.attempt == 1 and job.raw["execution_name"] == "REQ-KO-DUE-a1"
    assert not {"running_job", "retry_job", "failed_job"} & set(job.raw)


def _count_job_reads(env: Env) -> Counter[str]:
    """GetItem calls on the job table made through the shared clients (a botocore hook)."""
    seen: Counter[str] = Counter()
    table = env.names.remittances

    def before(params: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") == table:
            seen["GetItem"] += 1

    env.clients.dynamodb.meta.events.register("before-parameter-build.dynamodb.GetItem", before)
    _registered.append((env, before))
    return seen


_registered: list[tuple[Env, Any]] = []


@pytest.fixture(autouse=True)
def _unhook() -> Iterator[None]:
    """The clients are the test process's (tests/conftest.py): leave no hook on them."""
    yield
    while _registered:
        env, hook = _registered.pop()
        env.clients.dynamodb.meta.events.unregister(
            "before-parameter-build.dynamodb.GetItem", hook)


async def _completed(env: Env, request_id: str) -> dict[str, Any]:
    """Wait for COMPLETED reading with BatchGetItem, so the test adds no GetItem."""
    async def probe() -> dict[str, Any] | None:
        rows = await indexes.batch_get(env.clients.dynamodb, env.names.remittances,
                                       [request_id])
        row = rows.get(request_id)
        return row if row and row["status"] == "COMPLETED" else None
    return await eventually(probe, timeout_s=45, what=f"{request_id} COMPLETED")


async def test_a_small_payload_is_answered_without_reading_the_item(env: Env) -> None:
    reads = _count_job_reads(env)
    async with running(env, enrichment):
        await env.send(message("REQ-INLINE-1"))
        row = await _completed(env, "REQ-INLINE-1")
    assert json.loads(row["advice"])["request_id"] == "REQ-INLINE-1"
    assert reads["GetItem"] == 0


async def test_the_inlined_payload_leaves_private_extras_out(env: Env) -> None:
    """The execution input (kept in Step Functions' history) carries the message's own
    fields and the allowlisted extras only; the stored payload keeps everything."""
    sepa = dict(message("REQ-INLINE-PII"), debtor_iban="DE89370400440532013000",
                end_to_end_id="E2E-INLINE-1")
    reads = _count_job_reads(env)
    async with running(env, enrichment):
        await env.send(sepa)
        row = await _completed(env, "REQ-INLINE-PII")
    assert reads["GetItem"] == 0
    arn = (await env.executions(env.names.enrichment_sm))[0]["executionArn"]
    execution = await env.clients.sfn.describe_execution(executionArn=arn)
    inlined = json.loads(json.loads(execution["input"])["payload"])
    assert "debtor_iban" not in inlined and "DE89370400440532013000" not in execution["input"]
    assert inlined["end_to_end_id"] == "E2E-INLINE-1"
    assert json.loads(row["advice"])["extras"] == {"end_to_end_id": "E2E-INLINE-1"}
    assert json.loads(row["payload"])["debtor_iban"] == "DE89370400440532013000"


async def test_a_large_payload_is_read_from_the_item(env: Env) -> None:
    reads = _count_job_reads(env)
    big = dict(message("REQ-INLINE-BIG"), blob="b" * (env.settings.inline_payload_max_bytes + 1))
    # an allowlisted extra, so the task's view of the payload keeps it (and is too big)
    async with running(env.with_settings(advice_extra_fields="blob"), enrichment):
        await env.send(big)
        row = await _completed(env, "REQ-INLINE-BIG")
    assert json.loads(row["advice"])["request_id"] == "REQ-INLINE-BIG"
    assert reads["GetItem"] >= 1


def test_cost_model_counts_index_writes_by_projection() -> None:
    from tools.bench.cost import INDEX_EVENTS, index_wru

    enrichment, notification = INDEX_EVENTS["enrichment"], INDEX_EVENTS["notification"]
    # ALL rewrites the ~1.7 KB item (2 WRU) on enter, move (delete + put), change, leave
    # (enrichment also enters handoff-index when it completes)
    assert index_wru(enrichment, 1.73, "ALL") == 8 and index_wru(notification, 1.52, "ALL") == 10
    # keys only: 1 WRU per entry write, nothing for a non-key change
    assert index_wru(enrichment, 1.73, "KEYS_ONLY") == 3
    assert index_wru(notification, 1.52, "KEYS_ONLY") == 2


async def test_a_prompt_first_start_keeps_the_running_index_entry(env: Env) -> None:
    """RECEIVED is already in running-index; a start within a minute keeps the entry's
    key (no delete + put in the index), a late one (a job that waited) moves it."""
    sweeper = await build_sweeper(env.settings, env.clients, KINDS)
    starter = sweeper.targets["remittances"].starter
    store = env.store()
    prompt = await store.create("REQ-KEEP-PROMPT", "{}", "x")
    late = await store.create("REQ-KEEP-LATE", "{}", "x")
    assert prompt is not None and late is not None
    old = int(time.time()) - 600
    await env.clients.dynamodb.update_item(
        TableName=store.table, Key={"request_id": {"S": "REQ-KEEP-LATE"}},
        UpdateExpression="SET running_since = :old",
        ExpressionAttributeValues={":old": {"N": str(old)}})
    late = await store.require("REQ-KEEP-LATE")
    began = await starter.begin(prompt)
    moved = await starter.begin(late)
    assert began is not None and moved is not None
    assert began.status is Status.RUNNING
    assert began.raw["running_since"] == prompt.raw["running_since"]
    assert began.raw["running_job"] == prompt.raw["running_job"]
    assert int(moved.raw["running_since"]) >= int(time.time()) - 5

