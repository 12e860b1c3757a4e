"""Operator actions that must not mislead: resolve, the dead-letter coverage, replay, sign-out.

The sweeper's real app in-process over the emulator (``tests/helpers.console``);
the replay runs against real SQS calls while peeks run beside it, and every delete
it makes is checked against the receipt handles SQS handed out (observed through
the client's own ``before-call``/``after-call`` events, nothing altered).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from shared.aws.names import Names
from shared.operations import deadletters
from shared.operations.deadletters import DeadLetters
from shared.pipeline.jobs import Status
from tests.helpers import (
    CONSOLE_TOKEN,
    Env,
    console,
    console_sign_in,
    csrf_of,
    eventually,
    message,
    retrying,
)

BEARER = {"authorization": f"Bearer {CONSOLE_TOKEN}"}


async def test_resolve_is_refused_where_no_delivery_is_in_doubt(env: Env) -> None:
    store = env.store("notifications")
    request_id = f"REQ-{uuid.uuid4().hex}"
    job = await retrying(store, request_id, payload=json.dumps(message(request_id)))
    await store.transition(job, Status.FAILED, set_={"last_error": "endpoint disabled"})
    async with console(env) as http:
        resp = await http.post(f"/v1/jobs/notifications/{request_id}/resolve", headers=BEARER,
                               json={"outcome": "sent", "note": "looks fine"})
    assert resp.status_code == 409 and "in doubt" in resp.text, resp.text
    still = await store.require(request_id)
    assert still.status is Status.FAILED and "delivery_id" not in still.raw


async def test_the_dead_letter_api_and_console_cover_every_dlq_bootstrap_made(
        env: Env) -> None:
    listed = await env.clients.sqs.list_queues(QueueNamePrefix=f"{env.settings.prefix}-")
    made = {url.rsplit("/", 1)[1] for url in listed.get("QueueUrls", [])}
    dlqs = {q for q in made if q.endswith("-dlq")}
    assert {Names.dlq(env.names.execution_status), Names.dlq(env.names.partner_files_queue)} \
        <= dlqs and any("ses-events" in q for q in dlqs)
    async with console(env) as http:
        api = (await http.get("/v1/deadletters", headers=BEARER)).json()["queues"]
        await console_sign_in(http)
        page = (await http.get("/console/deadletters")).text
    assert {d["queue"] for d in api} == dlqs
    assert all(q in page for q in dlqs)


class HandleLedger:
    """Which receipt handle SQS last gave for each message; every delete is checked
    against it (AWS: a handle a later receive superseded may not delete)."""

    def __init__(self) -> None:
        self.owner: dict[str, str] = {}   # receipt handle -> message id
        self.latest: dict[str, str] = {}  # message id -> its newest handle
        self.stale: list[str] = []

    def received(self, parsed: Any = None, **_: Any) -> None:
        for m in (parsed or {}).get("Messages", []):
            self.owner[m["ReceiptHandle"]] = m["MessageId"]
            self.latest[m["MessageId"]] = m["ReceiptHandle"]

    def deleting(self, params: Any = None, **_: Any) -> None:
        handles = [e["ReceiptHandle"] for e in params.get("Entries", [])] \
            if "Entries" in params else [params["ReceiptHandle"]]
        for handle in handles:
            mid = self.owner.get(handle)
            if mid is not None and self.latest[mid] != handle:
                self.stale.append(mid)


@pytest.fixture
def short_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A replay's hold shortened to 12 s, so a slow replay outlives it within the test
    (at 4 s, and once at 8 s with a soak beside the suite, a loaded machine ran a
    heartbeat after its hold had expired)."""
    monkeypatch.setattr(deadletters, "ACT_VISIBILITY_S", 12)


@pytest.mark.usefixtures("short_hold")
async def test_a_replay_never_leaves_a_replayed_message_behind(fresh_env: Env) -> None:
    """About 45 s on a loaded 2-core machine: 200 real sends and deletes with peeks
    running beside them; shorter runs finish inside one hold and prove nothing."""
    env, count = fresh_env, 200
    source = env.names.remittance_events
    dlq_url = await env.queue_url(Names.dlq(source))
    bodies = [json.dumps(message(f"REQ-{uuid.uuid4().hex}")) for _ in range(count)]
    for start in range(0, count, 10):
        await env.clients.sqs.send_message_batch(QueueUrl=dlq_url, Entries=[
            {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start:start + 10])])
    ledger = HandleLedger()
    events = env.clients.sqs.meta.events
    hooks = (("after-call.sqs.ReceiveMessage", ledger.received),
             ("before-parameter-build.sqs.DeleteMessage", ledger.deleting),
             ("before-parameter-build.sqs.DeleteMessageBatch", ledger.deleting))
    for event, hook in hooks:
        events.register(event, hook)
    letters = DeadLetters(env.clients.sqs, [source])
    try:
        replaying = asyncio.create_task(letters.replay(Names.dlq(source), reason="(none)",
                                                       limit=1000))
        peeks = 0
        while not replaying.done():  # the console's overview refreshing meanwhile
            await letters.peek(Names.dlq(source), limit=10)
            peeks += 1
            await asyncio.sleep(0.1)
        result = await replaying
    finally:   # the clients are the test process's (tests/conftest.py)
        for event, hook in hooks:
            events.unregister(event, hook)
    assert peeks > 0 and len(result.done) + len(result.failed) <= count
    assert not ledger.stale, f"{len(ledger.stale)} deleted by a superseded receipt handle"

    async def dlq_empty() -> bool:  # nothing replayed is left behind, once holds expire
        depth = await letters.depth(Names.dlq(source))
        return depth == (0, 0) or (depth[0] == 0 and not result.failed and depth[1] == 0)

    leftovers = count - len(result.done)
    if leftovers == 0:
        await eventually(dlq_empty, timeout_s=30, what="the DLQ empty after every hold")
    replayed = await env.drain(source)
    got = [m["Body"] for m in replayed]
    assert len(got) == len(set(got)) == len(result.done), "each replayed message exactly once"
    assert set(got) <= set(bodies)


async def test_sign_out_ends_the_session_on_the_server(env: Env) -> None:
    async with console(env) as http:
        await console_sign_in(http)
        copied = dict(http.cookies)
        page = await http.get("/console")
        assert page.status_code == 200
        out = await http.post("/console/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303
        http.cookies.clear()
        http.cookies.update(copied)  # the cookie someone copied before the sign-out
        again = await http.get("/console")
    assert again.status_code == 303 and "/console/login" in again.headers["location"]


async def test_rotating_the_token_ends_every_session(env: Env) -> None:
    async with console(env) as http:
        await console_sign_in(http)
        copied = dict(http.cookies)
        assert (await http.get("/console")).status_code == 200
    async with console(env, token="rotated-" + uuid.uuid4().hex) as rotated:
        rotated.cookies.update(copied)
        resp = await rotated.get("/console")
    assert resp.status_code == 303


