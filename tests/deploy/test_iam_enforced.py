"""The IAM-enforced lane: every service as its own IAM principal, holding exactly the
policy ``tools/iam.py`` renders for it, against an emulator that enforces IAM.

An emulator of its own (enforcement is global to a moto server): bootstrap and the
IAM principals are created first, then enforcement is switched on
(``shared.aws.emulator.enforce_iam``) and every request is authenticated and checked
against its principal's policies, resources included (``shared/aws/emulator_iam.py``):
each service's process signs with its own user's keys, the workflows' calls are made
with their role (``<prefix>-stepfunctions``), the test itself is a harness user allowed
everything (it plays the partners, the banks and Step Functions' status events). The
emulator logs every refusal; any refusal fails the test that saw it, including one a
service retried and recovered from. What moto does not check is listed in
``docs/deploy.md``, "IAM enforced".
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.notification.resources import SES_SENDING
from shared.aws.clients import AwsClients, session
from shared.aws.dynamo import to_item
from shared.aws.emulator import enforce_iam, wait_until_up
from shared.provision.bootstrap import load_reference_data
from tests.helpers import (
    WEBHOOK_SECRET,
    AllSettings,
    Env,
    csrf_of,
    detail_of,
    email_in_doubt,
    eventually,
    free_port,
    job_in,
    publish_status_event,
)
from tests.helpers import test_settings as settings_for
from tests.pipeline_procs import SERVICES, all_ready, aws_calls, metrics_text, remittance
from tools import iam
from tools.demo import reference_data
from tools.procs import service_process
from tools.stack import bootstrap_stack, file_drops
from tools.webhook_receiver import Receiver

ACCOUNT = "123456789012"
REGION = "us-east-1"
TOKEN = "iam-lane-token-0123456789"
HARNESS = "harness"
ISO = resources.files("shared.contracts").joinpath("examples", "iso20022")


@dataclass
class Lane:
    endpoint: str
    settings: AllSettings
    #: principal (a service, ``harness``) → (access key id, secret)
    keys: dict[str, tuple[str, str]]
    refusal_log: Path
    receiver: Receiver
    urls: dict[str, str] = field(default_factory=dict)

    def principal(self, access_key: str) -> str:
        return next((p for p, (k, _) in self.keys.items() if k == access_key),
                    "stepfunctions role" if access_key.startswith("ASIA") else access_key)

    def refusals(self, since: int = 0) -> list[dict[str, Any]]:
        """Refusals the emulator logged, from line ``since`` on, with their principal."""
        out = []
        for line in self.refusal_log.read_text().splitlines()[since:]:
            if '"emulator.iam_refused"' in line:
                row = json.loads(line[line.index("{"):])
                out.append({**row, "principal": self.principal(row["access_key"])})
        return out

    def mark(self) -> int:
        return len(self.refusal_log.read_text().splitlines())

    def assert_no_refusals(self, since: int) -> None:
        refused = self.refusals(since)
        unique = {(r["principal"], r["action"], r["resource"], r["error"]): r for r in refused}
        refused = list(unique.values())
        assert not refused, "AccessDenied under the shipped policies:\n" + "\n".join(
            f"  {r['principal']}: {r['action']} on {r['resource']} ({r['error']})"
            for r in refused)

    def ok(self, resp: httpx.Response, since: int) -> None:
        """A service's answer was a success; if not, the refusal behind it is named."""
        if resp.status_code >= 300:
            self.assert_no_refusals(since)
            raise AssertionError(f"{resp.request.method} {resp.request.url.path}: "
                                 f"{resp.status_code} {resp.text[:300]}")

    def env(self, clients: AwsClients) -> Env:
        return Env(self.settings, clients, self.endpoint)


def _policy_document(role: str, prefix: str) -> str:
    return json.dumps(iam.policy(role, prefix, region=REGION, account=ACCOUNT))


async def _provision(settings: AllSettings, receiver: Receiver) -> dict[str, tuple[str, str]]:
    """Bootstrap, reference data, one IAM user per service, the workflows' role policy."""
    async with AwsClients(settings) as clients:
        await bootstrap_stack(settings, clients)
        await load_reference_data(clients, settings, reference_data())
        env = Env(settings, clients, settings.aws_endpoint_url or "")
        payee = next(p for p in reference_data()["payees"] if p["payee_id"] == "PAYEE-0003")
        payee["webhook_url"] = f"http://127.0.0.1:{receiver.port}/hooks/remittance"
        await clients.dynamodb.put_item(TableName=env.names.payees, Item=to_item(payee))
    keys: dict[str, tuple[str, str]] = {}
    async with session().create_client("iam", endpoint_url=settings.aws_endpoint_url,
                                           region_name=REGION) as client:
        everything = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]})
        for principal in (*SERVICES, HARNESS):
            user = f"{settings.prefix}-{principal}"
            await client.create_user(UserName=user)
            await client.put_user_policy(
                UserName=user, PolicyName="remitflow",
                PolicyDocument=everything if principal == HARNESS
                else _policy_document(principal, settings.prefix))
            key = (await client.create_access_key(UserName=user))["AccessKey"]
            keys[principal] = (key["AccessKeyId"], key["SecretAccessKey"])
        await client.put_role_policy(
            RoleName=env.names.sfn_role, PolicyName="remitflow",
            PolicyDocument=_policy_document(iam.WORKFLOWS, settings.prefix))
    return keys


def _in_thread(coro: Any) -> Any:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module")
def lane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lane]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("iam-lane") / "emulator.log"
    with ExitStack() as stack, pytest.MonkeyPatch.context() as patch:
        out = stack.enter_context(log.open("wb"))
        emulator = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "emulator", "--port", str(port)],
            env={**os.environ, "MOTO_PORT": str(port), "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing"},
            stdout=subprocess.DEVNULL, stderr=out)
        stack.callback(emulator.wait, 10)
        stack.callback(emulator.terminate)
        wait_until_up("127.0.0.1", port, timeout_s=60)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")  # any key, until enforcement is on
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        receiver = Receiver(WEBHOOK_SECRET, port=0).start()
        stack.callback(receiver.stop)
        settings = settings_for("i" + uuid.uuid4().hex[:10]).model_copy(
            update={"aws_endpoint_url": endpoint, "aws_region": REGION})
        keys = _in_thread(_provision(settings, receiver))
        enforce_iam(endpoint)
        # The test itself is the harness principal from here on (os.environ is read by
        # every client it builds; the session's own emulator ignores credentials).
        patch.setenv("AWS_ACCESS_KEY_ID", keys[HARNESS][0])
        patch.setenv("AWS_SECRET_ACCESS_KEY", keys[HARNESS][1])
        lane = Lane(endpoint, settings, keys, log, receiver)
        common = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": REGION,
                  "REMITFLOW_RECEIVE_WAIT_S": "1", "REMITFLOW_SHUTDOWN_GRACE_S": "5",
                  "REMITFLOW_API_TOKEN": TOKEN, "REMITFLOW_SWEEPER_INTERVAL_S": "1",
                  "REMITFLOW_STREAM_IDLE_MAX_S": "0.5", "REMITFLOW_STREAM_POLL_INTERVAL_S": "0.2",
                  "REMITFLOW_LEASE_TTL_S": "5", "REMITFLOW_TASK_HEARTBEAT_S": "5",
                  "REMITFLOW_WEBHOOK_ALLOW_PRIVATE": "true", "REMITFLOW_HANDOFF_GRACE_S": "1",
                  "REMITFLOW_ENDPOINT_METRICS_INTERVAL_S": "1"}
        for service in SERVICES:
            key_id, secret = keys[service]
            p = stack.enter_context(service_process(
                service, settings.prefix, {**common, "AWS_ACCESS_KEY_ID": key_id,
                                           "AWS_SECRET_ACCESS_KEY": secret}, graceful=True))
            lane.urls[service] = p.url
        try:
            _in_thread(all_ready(lane.urls))
        except AssertionError:
            lane.assert_no_refusals(0)  # names the missing grant, if that is why
            raise
        yield lane


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def test_every_service_starts_ready_under_exactly_its_policy(lane: Lane) -> None:
    """Readiness reads every queue, table and state machine a service needs: the first
    place a missing grant shows (and this test carries the lane's start-up)."""
    async with httpx.AsyncClient(timeout=10) as http:
        for service, url in lane.urls.items():
            ready = await http.get(f"{url}/readyz")
            assert ready.status_code == 200, (service, ready.text)
    lane.assert_no_refusals(0)


async def test_pipeline_email_webhook_ses_events_handoff_and_endpoints(lane: Lane) -> None:
    since = lane.mark()
    async with AwsClients(lane.settings) as clients:
        env = lane.env(clients)
        email = remittance("REQ-IAM-EMAIL")
        hooked = dict(remittance("REQ-IAM-HOOK"), payee_id="PAYEE-0003",
                      invoice_ids=["INV-3001"], amount="150000", currency="JPY")
        await env.send(email, hooked)
        for rid in ("REQ-IAM-EMAIL", "REQ-IAM-HOOK"):
            await job_in(env.store(), rid, "COMPLETED", timeout_s=40)
            await job_in(env.store("notifications"), rid, "SENT", timeout_s=40)
        assert any("REQ-IAM-HOOK" in json.dumps(d) for d in lane.receiver.received)
        # The SES events the send produced are consumed: their queue empties.
        ses_queue = env.names.name(SES_SENDING.events)

        async def ses_events_consumed() -> bool:
            return await env.left_on(ses_queue) == 0
        await eventually(ses_events_consumed, timeout_s=20, what="SES events consumed")
        async with httpx.AsyncClient(timeout=10) as http:
            sweep = await http.post(f"{lane.urls['sweeper']}/v1/sweep", headers=_auth())
            lane.ok(sweep, since)
            assert "handoff" in sweep.json()
            endpoints = await http.get(f"{lane.urls['notification']}/v1/endpoints",
                                       headers=_auth())
            lane.ok(endpoints, since)
    lane.assert_no_refusals(since)


async def test_operator_paths_redrive_resolve_console_and_dead_letters(lane: Lane) -> None:
    since = lane.mark()
    sweeper = lane.urls["sweeper"]
    async with AwsClients(lane.settings) as clients, \
            httpx.AsyncClient(base_url=sweeper, timeout=10) as http:
        env = lane.env(clients)
        # A business rejection, then re-driven by hand.
        await env.send(dict(remittance("REQ-IAM-REJ"), payee_id="PAYEE-NOBODY"))
        await job_in(env.store(), "REQ-IAM-REJ", "REJECTED", timeout_s=40)
        redrive = await http.post("/v1/jobs/remittances/REQ-IAM-REJ/redrive", headers=_auth(),
                                  json={"note": "iam lane"})
        lane.ok(redrive, since)
        listed = await http.get("/v1/jobs", params={"table": "remittances",
                                                    "state": "running"}, headers=_auth())
        lane.ok(listed, since)
        # An e-mail whose outcome is unknown, resolved by an operator.
        await email_in_doubt(env, "REQ-IAM-RESOLVE")
        resolved = await http.post("/v1/jobs/notifications/REQ-IAM-RESOLVE/resolve",
                                   headers=_auth(), json={"outcome": "sent", "note": "lane"})
        lane.ok(resolved, since)
        # The console: overview, search, timeline, files.
        page = await http.get("/console/login")
        await http.post("/console/login", data={"csrf": csrf_of(page.text), "token": TOKEN,
                                                "next": "/console"})
        for path, params in (("/console", {}), ("/console/jobs", {"state": "failed"}),
                             ("/console/search", {"q": "REQ-IAM-", "mode": "prefix",
                                                  "table": "remittances"}),
                             ("/console/requests/REQ-IAM-REJ", {}), ("/console/files", {}),
                             ("/console/deadletters", {})):
            resp = await http.get(path, params=params)
            lane.ok(resp, since)
        # Dead letters: peek, replay, delete.
        dlq = env.names.dlq(env.names.remittance_events)
        await env.send("not json at all", "{\"also\": \"not a remittance\"}")

        async def dead_lettered() -> list[Any] | None:
            peek = await http.get(f"/v1/deadletters/{dlq}", headers=_auth())
            lane.ok(peek, since)
            found = peek.json()["messages"]
            return found if len(found) >= 2 else None
        letters = await eventually(dead_lettered, timeout_s=20, what="two dead letters")
        one = letters[0]["message_id"]
        shown = await http.get(f"/v1/deadletters/{dlq}/messages/{one}", headers=_auth())
        lane.ok(shown, since)
        replayed = await http.post(f"/v1/deadletters/{dlq}/replay", headers=_auth(),
                                   json={"message_ids": [one]})
        lane.ok(replayed, since)
        assert replayed.json()["done"] == [one], replayed.text
        deleted = await http.post(f"/v1/deadletters/{dlq}/delete", headers=_auth(),
                                  json={"reason": letters[1]["reason"]})
        lane.ok(deleted, since)
        depths = await http.get("/v1/deadletters", headers=_auth())
        lane.ok(depths, since)
    lane.assert_no_refusals(since)


async def test_status_events_and_bank_files(lane: Lane) -> None:
    since = lane.mark()
    async with AwsClients(lane.settings) as clients:
        env = lane.env(clients)
        await env.send(remittance("REQ-IAM-EVT"))
        job = await job_in(env.store(), "REQ-IAM-EVT", "COMPLETED", timeout_s=40)
        desc = await clients.sfn.describe_execution(executionArn=str(job.raw["execution_arn"]))
        # A late FAILED event for an execution that already succeeded: stale, acknowledged.
        await publish_status_event(env, detail_of(dict(desc), "FAILED"))

        async def stale_counted() -> bool:
            text = await metrics_text(lane.urls["sweeper"])
            return 'outcome="stale"' in text and await env.left_on(
                env.names.execution_status) == 0
        await eventually(stale_counted, timeout_s=20, what="status event consumed as stale")

        drop = file_drops(env.settings)[0]
        name = "camt.054.001.08-batch.xml"
        await clients.s3.put_object(Bucket=drop.bucket_name(env.settings.prefix),
                                    Key=f"FIRSTBANK/iam/{name}",
                                    Body=ISO.joinpath(name).read_bytes())
        for rid in ("ISO-FIRSTBANK-E2E-EC-0201", "ISO-FIRSTBANK-E2E-EC-0202"):
            await job_in(env.store(), rid, "COMPLETED", timeout_s=40)

        async def file_event_acknowledged() -> bool:   # after the file's last write
            return await env.left_on(drop.queue_name(env.settings.prefix)) == 0
        await eventually(file_event_acknowledged, timeout_s=20, what="the S3 event deleted")
    lane.assert_no_refusals(since)


async def test_every_call_of_the_lane_is_in_the_shipped_policy_files(lane: Lane) -> None:
    """What the paths above made each service call (its ``/metrics``), against the
    checked-in ``deploy/iam/<service>.json`` (the lane enforced what ``tools/iam.py``
    renders; this ties the shipped files to the same calls, for every route and worker
    the lane ran, not only the pipeline)."""
    missing: dict[str, list[str]] = {}
    for service in SERVICES:
        calls = await aws_calls(lane.urls[service])
        assert calls, f"{service} reported no AWS calls"
        shipped = iam.policy_actions(iam.IAM_DIR / f"{service}.json")
        gaps = sorted({iam.action_of(svc, op) for svc, op in calls} - shipped)
        if gaps:
            missing[service] = gaps
    assert not missing, f"calls without a grant in deploy/iam: {missing}"


async def test_a_removed_grant_is_refused_and_named(lane: Lane) -> None:
    """The lane can fail: the sweeper without ``sqs:ReceiveMessage`` on the dead-letter
    queues cannot peek, and the refusal names the principal, action and queue."""
    since = lane.mark()
    user = f"{lane.settings.prefix}-sweeper"
    document = iam.policy("sweeper", lane.settings.prefix, region=REGION, account=ACCOUNT)
    for statement in document["Statement"]:
        if statement["Sid"] == "DeadLetters":
            statement["Action"].remove("sqs:ReceiveMessage")
    dlq = f"{lane.settings.prefix}-remittance-events-dlq"
    async with session().create_client("iam", endpoint_url=lane.endpoint,
                                           region_name=REGION) as client:
        await client.put_user_policy(UserName=user, PolicyName="remitflow",
                                     PolicyDocument=json.dumps(document))
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                peek = await http.get(f"{lane.urls['sweeper']}/v1/deadletters/{dlq}",
                                      headers=_auth())
            assert peek.status_code >= 500
        finally:
            await client.put_user_policy(UserName=user, PolicyName="remitflow",
                                         PolicyDocument=_policy_document("sweeper",
                                                                         lane.settings.prefix))
    refused = {(r["principal"], r["action"], r["resource"].rsplit(":", 1)[-1])
               for r in lane.refusals(since)}
    assert ("sweeper", "ReceiveMessage", dlq) in refused, refused
