"""Every SQS consumer acknowledges every message: one suite over all of them.

The consumers are enumerated from the declarations (``tools/stack.py``: the job
kinds' intake and task queues and SES-event queues, the file drops, the sweeper's
execution-status queue), and a completeness test builds every service and checks
that the queues its workers read are exactly those: a consumer added tomorrow is in
this suite or fails it. For each consumer, messages it cannot read (not JSON, JSON of
another shape, a JSON list) are fed with the production logging configuration
(JSON logs), and the invariant is asserted: each is in the consumer's DLQ with a
``remitflow.reason``, and after one visibility timeout the source queue holds
nothing (visible + in flight + delayed = 0).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from shared.aws.names import Names
from shared.logs import configure_logging
from tests.helpers import Env, built_consumers, close, declared_consumers, eventually

UNREADABLE = ("not json {", json.dumps({"unexpected": "shape"}), "[1, 2, 3]")
async def test_the_suite_covers_every_consumer_the_services_run(env: Env) -> None:
    consumers, built = await built_consumers(env)
    await close(built)
    assert sorted(q.removeprefix(f"{env.settings.prefix}-") for q in consumers) == \
        declared_consumers()


@pytest.mark.parametrize("short", declared_consumers())
async def test_unreadable_messages_are_dead_lettered_with_a_reason(fresh_env: Env,
                                                                   short: str) -> None:
    configure_logging("INFO", "json")                       # as in production
    env = fresh_env.with_settings(visibility_timeout_s=5, task_heartbeat_s=1)
    queue = env.names.name(short)
    consumers, built = await built_consumers(env)
    worker = consumers[queue]
    url = await env.queue_url(queue)
    for body in UNREADABLE:
        await env.clients.sqs.send_message(QueueUrl=url, MessageBody=body)
    task = asyncio.create_task(worker.run())
    dead: list[dict[str, object]] = []
    try:
        async def all_dead() -> bool:
            dead.extend(await env.drain(Names.dlq(queue), wait_s=0))
            return len(dead) >= len(UNREADABLE)

        await eventually(all_dead, timeout_s=60, what=f"{short}: unreadable ones in its DLQ")
        assert await env.left_after_visibility(queue, worker.visibility_s) == 0, \
            f"{short}: every message acknowledged after a visibility timeout"
    finally:
        worker.shutdown()
        await asyncio.wait_for(task, timeout=20)
        await close(built)
    assert sorted(str(m["Body"]) for m in dead) == sorted(UNREADABLE)
    reasons = [m["MessageAttributes"]["remitflow.reason"]["StringValue"]  # type: ignore[index]
               for m in dead]
    assert all(reasons), reasons
