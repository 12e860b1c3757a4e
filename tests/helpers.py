"""Test helpers: running a service's workers in-process, and polling for an end state."""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from services.sweeper.service import build_sweeper
from shared.api import ApiAuth, Heartbeat, create_app
from shared.aws.clients import AwsClients, session
from shared.aws.dynamo import to_item
from shared.aws.emulator import sent_emails
from shared.aws.sqs import SqsWorker
from shared.operations.status_events import DETAIL_TYPE
from shared.pipeline.assemble import state_machine_arn
from shared.pipeline.jobs import Job, JobStore, Status, content_hash, execution_name
from shared.runtime import Builder, ServiceParts
from tests.flat_settings import AllSettings as AllSettings
from tests.flat_settings import replace_settings as replace_settings
from tests.flat_settings import test_settings as test_settings
from tools import procs
from tools.demo import generate_messages
from tools.stack import KINDS, SERVICES, builder, resources_of
from tools.stack import StackNames as Names
from tools.webhook_receiver import Receiver

T = TypeVar("T")


@dataclass
class Env:
    settings: AllSettings
    clients: AwsClients
    endpoint: str
    #: where this test's service processes write their output (its ``tmp_path``); a
    #: failing test shows the end of each (``tests/conftest.py``)
    logs: Path | None = None

    @property
    def names(self) -> Names:
        return Names(self.settings.prefix)

    def with_settings(self, **overrides: Any) -> Env:
        return Env(replace_settings(self.settings, **overrides), self.clients, self.endpoint,
                   self.logs)

    def log_for(self, service: str) -> Path | None:
        """A new file in :attr:`logs` for one ``service`` process's output."""
        if self.logs is None:
            return None
        taken = len(list(self.logs.glob(f"{service}-*.log")))
        return self.logs / f"{service}-{taken + 1}.log"

    def store(self, short: str = "remittances") -> JobStore:
        return JobStore(self.clients.dynamodb, self.names.table(short),
                        shards=self.settings.retry.shards)

    async def queue_url(self, name: str) -> str:
        return (await self.clients.sqs.get_queue_url(QueueName=name))["QueueUrl"]

    async def send(self, *bodies: str | dict[str, Any]) -> None:
        url = await self.queue_url(self.names.remittance_events)
        entries: list[Any] = [
            {"Id": str(i), "MessageBody": b if isinstance(b, str) else json.dumps(b)}
            for i, b in enumerate(bodies)]
        for start in range(0, len(entries), 10):
            await self.clients.sqs.send_message_batch(QueueUrl=url,
                                                      Entries=entries[start:start + 10])

    async def drain(self, queue: str, *, wait_s: float = 1.0) -> list[Any]:
        """Every message currently in ``queue``, or arriving within ``wait_s`` (received
        and left invisible). Long polls: one answers as soon as a message is there, so
        waiting costs a call per second, not a call per round trip."""
        url = await self.queue_url(queue)
        out: list[Any] = []
        deadline = time.monotonic() + wait_s
        while True:
            remaining = deadline - time.monotonic()
            resp = await self.clients.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10,
                WaitTimeSeconds=min(20, math.ceil(remaining)) if remaining > 0 else 0,
                MessageAttributeNames=["All"], VisibilityTimeout=300)
            msgs = resp.get("Messages", [])
            out += msgs
            if not msgs and time.monotonic() > deadline:
                return out

    async def left_on(self, queue: str) -> int:
        """Messages on ``queue`` now: visible + in flight + delayed."""
        url = await self.queue_url(queue)
        attrs = (await self.clients.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                          "ApproximateNumberOfMessagesNotVisible",
                                          "ApproximateNumberOfMessagesDelayed"]))["Attributes"]
        return sum(int(v) for v in attrs.values())

    async def left_after_visibility(self, queue: str, visibility_s: float) -> int:
        """The acknowledgement invariant: what ``queue`` holds once one visibility timeout
        has passed (a message its consumer never deleted is visible again by then, or
        received again and in flight: either way it counts)."""
        await asyncio.sleep(visibility_s + 1)
        return await self.left_on(queue)

    async def executions(self, state_machine: str) -> list[Any]:
        """Every execution of this test's ``state_machine`` (all pages: the session's
        emulator holds the state machines of every test)."""
        arn = await state_machine_arn(self.clients, state_machine)
        out: list[Any] = []
        async for page in self.clients.sfn.get_paginator("list_executions").paginate(
                stateMachineArn=arn):
            out += page["executions"]
        return out


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout_s: float = 30.0,
                     what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.2)


async def job_in(store: JobStore, request_id: str, *statuses: str,
                 timeout_s: float = 30.0) -> Job:
    async def probe() -> Job | None:
        job = await store.get(request_id)
        return job if job is not None and job.status in statuses else None

    try:
        return await eventually(probe, timeout_s=timeout_s,
                                what=f"{request_id} in {statuses}")
    except AssertionError:
        job = await store.get(request_id)
        raise AssertionError(f"{request_id} never reached {statuses}: last seen "
                             f"{job.public() if job else None}") from None


@asynccontextmanager
async def running(env: Env, build: Builder) -> AsyncIterator[ServiceParts]:
    """Run a service's workers in this event loop; stop them gracefully on exit."""
    parts = await build(env.settings, env.clients)
    tasks = [asyncio.create_task(w.run()) for w in parts.workers]
    try:
        yield parts
    finally:
        for w in parts.workers:
            w.shutdown()
        done, pending = await asyncio.wait(tasks, timeout=15)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception():
                raise task.exception()  # type: ignore[misc]


def emails_to(env: Env, address: str) -> list[dict[str, Any]]:
    """E-mails the emulator's SES accepted for one address (a test's own payee)."""
    return [m for m in sent_emails(env.endpoint)
            if m["destinations"]["ToAddresses"] == [address]]


# --- job fixtures shared by the sweeper, status-event and console tests ---------------

def message(request_id: str) -> dict[str, Any]:
    return dict(generate_messages(1)[0], request_id=request_id)


async def retrying(store: JobStore, request_id: str, *, attempt: int = 1,
                   due: int | None = None, payload: str = "{}") -> Job:
    """A job whose attempt ``attempt`` failed transiently, due at ``due`` (default now)."""
    job = await store.create(request_id, payload, content_hash(payload))
    assert job is not None
    job = await store.transition(job, Status.RUNNING, sort_value=int(time.time()), set_={
        "attempt": attempt, "execution_name": execution_name(request_id, attempt)})
    return await store.transition(job, Status.RETRY_PENDING, set_={"last_error": "boom"},
                                  sort_value=int(time.time()) if due is None else due)


async def names_of(env: Env, machine: str) -> list[str]:
    return [e["name"] for e in await env.executions(machine)]


def history(job: Job) -> str:
    return " | ".join(job.raw.get("history", []))


# --- the sweeper's app in-process (console and /v1 tests) ---------------------------

CONSOLE_TOKEN = "console-test-token-0123456789"


@asynccontextmanager
async def console(env: Env, token: str | None = CONSOLE_TOKEN
                  ) -> AsyncIterator[httpx.AsyncClient]:
    settings = replace_settings(env.settings, api_token=SecretStr(token) if token else None)
    parts = await builder("sweeper")(settings, env.clients)

    async def ready() -> dict[str, Any]:
        return {}

    app = create_app(service="sweeper", readiness=ready, heartbeat=Heartbeat(),
                     routers=parts.routers, pages=parts.pages,
                     page_headers=parts.page_headers,
                     auth=ApiAuth(token=token) if token else ApiAuth(disabled=True))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://sweeper") as client:
        yield client


CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of a console page's form."""
    found = CSRF_FIELD.search(html)
    assert found, html[:500]
    return found.group(1)


async def console_sign_in(http: httpx.AsyncClient, token: str = CONSOLE_TOKEN
                          ) -> httpx.Response:
    page = await http.get("/console/login")
    return await http.post("/console/login", data={"csrf": csrf_of(page.text), "token": token,
                                                   "next": "/console"})


# --- every SQS consumer (tests/shared/aws/test_every_consumer.py, …_message_class.py) ---

_P = "p"


def _short(name: str) -> str:
    return name.removeprefix(f"{_P}-")


def declared_consumers() -> list[str]:
    """Short names of every queue a service consumes, read from the declarations."""
    out: list[str] = []
    for kind in KINDS:
        kn = kind.names(_P)
        out += [_short(kn.intake_queue), _short(kn.task_queue)]
    out += [_short(q) for q in resources_of().queues(_P)]
    out.append(_short(Names(_P).execution_status))
    return sorted(out)


async def built_consumers(env: Env) -> tuple[dict[str, SqsWorker], list[ServiceParts]]:
    """Every service built for ``env``: the SQS consumers by queue name, and the parts."""
    consumers: dict[str, SqsWorker] = {}
    built = []
    for service in SERVICES:
        parts = await builder(service.name)(env.settings, env.clients)
        built.append(parts)
        for worker in parts.workers:
            if isinstance(worker, SqsWorker):
                assert worker.queue not in consumers, f"two consumers of {worker.queue}"
                consumers[worker.queue] = worker
    return consumers, built


async def close(built: list[ServiceParts]) -> None:
    for parts in built:
        for closer in parts.closers:
            await closer()


# --- ports and settings ------------------------------------------------------------

free_port = procs.free_port


# --- a service as its own OS process --------------------------------------------------

@contextmanager
def service_process(env: Env, service: str, *, capture: bool = False,
                    **extra_env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``remitflow run SERVICE`` for this test's prefix (``tools/procs.py``); killed on exit."""
    overrides = {"REMITFLOW_RECEIVE_WAIT_S": "1", "REMITFLOW_SHUTDOWN_GRACE_S": "10",
                 **extra_env}
    with procs.service_process(service, env.settings.prefix, overrides, capture=capture,
                               log=None if capture else env.log_for(service)) as p:
        yield p.url, p.proc


# --- the demo webhook payee (notification and delivery tests) ------------------------

EXAMPLES = files("shared.contracts").joinpath("examples")
WEBHOOK_SECRET = "whsec_cmVtaXRmbG93LWRlbW8td2ViaG9vay1zZWNyZXQtMzJi"


async def point_webhook_payee_at(env: Env, receiver: Receiver) -> None:
    payee = next(p for p in json.loads(EXAMPLES.joinpath("reference-data.json").read_text())
                 ["payees"] if p["payee_id"] == "PAYEE-0003")
    payee["webhook_url"] = f"http://127.0.0.1:{receiver.port}/hooks/remittance"
    await env.clients.dynamodb.put_item(TableName=env.names.payees, Item=to_item(payee))


def example(name: str) -> str:
    return EXAMPLES.joinpath(name).read_text()


# --- execution status events (EventBridge → the sweeper's consumer) ------------------

async def publish_status_event(env: Env, detail: dict[str, Any]) -> None:
    """One event as Step Functions sends it (moto accepts the ``aws.states`` source)."""
    async with session().create_client("events", endpoint_url=env.endpoint,
                                           region_name="us-east-1") as events:
        resp = await events.put_events(Entries=[{
            "Source": "aws.states", "DetailType": DETAIL_TYPE,
            "Resources": [detail["executionArn"]], "Detail": json.dumps(detail)}])
        assert resp["FailedEntryCount"] == 0


def detail_of(desc: dict[str, Any], status: str) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp() * 1000)
    return {"executionArn": desc["executionArn"], "stateMachineArn": desc["stateMachineArn"],
            "name": desc["name"], "status": status, "startDate": now - 1000,
            "stopDate": now, "input": desc["input"], "output": None}


async def started_job(env: Env, request_id: str, table: str = "remittances",
                      payload: str | None = None) -> tuple[Job, dict[str, Any]]:
    """A real attempt: job RUNNING and its execution waiting on a task nobody answers
    (a partner message for ``remittances``; give ``payload`` for another table)."""
    sweeper = await build_sweeper(env.settings, env.clients, KINDS)
    target = sweeper.target(table)
    payload = payload or json.dumps(message(request_id))
    job = await target.store.create(request_id, payload, content_hash(payload))
    assert job is not None
    running = await target.starter.begin(job)
    assert running is not None and running.status is Status.RUNNING
    arn = target.starter.execution_arn(running.execution_name or "")
    return running, dict(await env.clients.sfn.describe_execution(executionArn=arn))


async def email_in_doubt(env: Env, request_id: str,
                         last_error: str = "SES send outcome unknown") -> Job:
    """A notification whose e-mail outcome is unknown: intent recorded on attempt 1,
    then ``FAILED`` (``outcome_unknown``), what ``resolve`` settles.

    Inserted already ``RUNNING`` on attempt 1: on a stack whose services run, the
    stream's starter begins a job inserted ``RECEIVED`` and, on a loaded machine, got
    there between the insert and this helper's own transition (``VersionConflict``)."""
    store = env.store("notifications")
    payload = json.dumps({"request_id": request_id})
    job = await store.create(request_id, payload, content_hash(payload), extra={
        "status": Status.RUNNING.value, "attempt": 1, "channel": "email",
        "delivery_intent": "email@2026-11-26T10:00:00Z"})
    assert job is not None
    return await store.transition(job, Status.FAILED, set_={
        "last_error": last_error, "failure_reason": "outcome_unknown"})
