"""The emulator's Step Functions: definitions parsed once (re-parsed on change), and a
task's early answer kept.

docs/emulator.md has the finding; ``shared/aws/emulator_sfn.py`` the caches.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from shared.aws import emulator_sfn
from tests.helpers import Env


def _pass_machine(value: str) -> str:
    return json.dumps({"StartAt": "Say", "States": {
        "Say": {"Type": "Pass", "Parameters": {"said": value, "echo.$": "$.word"},
                "ResultPath": "$.out", "End": True}}})


async def _run(env: Env, arn: str, word: str) -> dict[str, Any]:
    sfn = env.clients.sfn
    started = await sfn.start_execution(stateMachineArn=arn, name=uuid.uuid4().hex,
                                        input=json.dumps({"word": word}))
    for _ in range(200):
        described = await sfn.describe_execution(executionArn=started["executionArn"])
        if described["status"] != "RUNNING":
            assert described["status"] == "SUCCEEDED", described
            return dict(json.loads(described["output"])["out"])
        await asyncio.sleep(0.05)
    raise AssertionError("execution still running")


@pytest.mark.e2e
async def test_an_updated_definition_is_parsed_again(env: Env) -> None:
    """Over the emulator's HTTP API: a new definition takes effect at once, the old one
    is never served from the cache, and an unchanged one keeps working."""
    sfn = env.clients.sfn
    role = f"arn:aws:iam::123456789012:role/{env.names.prefix}-cache-test"
    created = await sfn.create_state_machine(
        name=f"{env.names.prefix}-cache-{uuid.uuid4().hex[:6]}", roleArn=role,
        definition=_pass_machine("first"), type="STANDARD")
    arn = created["stateMachineArn"]

    assert await _run(env, arn, "a") == {"said": "first", "echo": "a"}
    assert await _run(env, arn, "b") == {"said": "first", "echo": "b"}
    await sfn.update_state_machine(stateMachineArn=arn, definition=_pass_machine("second"))
    assert await _run(env, arn, "c") == {"said": "second", "echo": "c"}
    assert await _run(env, arn, "d") == {"said": "second", "echo": "d"}


@pytest.mark.unit
def test_a_definition_is_parsed_once_per_text() -> None:
    emulator_sfn.install()
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    one, two = _pass_machine(uuid.uuid4().hex), _pass_machine(uuid.uuid4().hex)
    before = emulator_sfn.parse_cache_info()
    first = AmazonStateLanguageParser.parse(one)
    assert AmazonStateLanguageParser.parse(one) is first
    AmazonStateLanguageParser.parse(two)
    after = emulator_sfn.parse_cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (2, 1)


def _wait_for_answer(endpoint: Any, heartbeat_s: int) -> Any:
    """moto's own wait for a ``.waitForTaskToken`` task with ``HeartbeatSeconds``: what
    the execution thread runs once it has sent the task's message."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback as callback_task,
    )

    heartbeat = endpoint.setup_heartbeat_endpoint(heartbeat_seconds=heartbeat_s)
    wait: Any = callback_task.StateTaskServiceCallback._wait_for_task_token_heartbeat
    running = SimpleNamespace(is_running=lambda: True)   # all it asks of its environment
    return wait(None, running, endpoint, heartbeat)


@pytest.mark.unit
def test_an_answer_before_the_execution_waits_is_the_tasks_outcome() -> None:
    """A worker that answers before moto's execution thread starts waiting (it had just
    sent the message) gets its answer used, not a ``States.HeartbeatTimeout`` a
    ``HeartbeatSeconds`` later: moto as shipped returns ``HeartbeatTimedOut`` here."""
    emulator_sfn.keep_early_answers()
    from moto.stepfunctions.parser.asl.eval.callback.callback import (
        CallbackEndpoint,
        CallbackOutcomeSuccess,
    )

    endpoint = CallbackEndpoint(callback_id="token-1")
    success = CallbackOutcomeSuccess(callback_id="token-1", output='{"ok": true}')
    endpoint.notify(success)                        # SendTaskSuccess, quick worker

    assert _wait_for_answer(endpoint, heartbeat_s=1) is success


@pytest.mark.unit
def test_a_heartbeat_before_the_execution_waits_is_accepted_and_counted() -> None:
    """``SendTaskHeartbeat`` as soon as the token exists is valid on AWS (moto as
    shipped refuses it as an invalid token) and it counts as the first heartbeat; the
    answer that follows is then the outcome."""
    emulator_sfn.keep_early_answers()
    from moto.stepfunctions.parser.asl.eval.callback.callback import (
        CallbackOutcomeFailure,
        CallbackPoolManager,
    )

    pool = CallbackPoolManager(activity_store={})
    endpoint = pool.add("token-2")
    assert pool.heartbeat("token-2") is True        # before any heartbeat endpoint
    failure = CallbackOutcomeFailure(callback_id="token-2", error="remitflow.Transient",
                                     cause="later")
    threading.Timer(0.2, endpoint.notify, args=(failure,)).start()

    assert _wait_for_answer(endpoint, heartbeat_s=30) is failure
