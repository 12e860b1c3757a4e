"""Bank files end to end: S3 upload → S3 event → file intake → jobs → workflows → payees.

Everything talks to the emulator over HTTP: the upload is a real ``PutObject`` and
the queue message is the emulator's own S3 event notification.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from services.enrichment.kind import ENRICHMENT
from services.enrichment.service import build as build_enrichment
from services.enrichment.service import file_intake
from services.notification.service import build as build_notification
from shared.aws.clients import AwsClients
from shared.aws.dynamo import from_item, to_item
from shared.files.drop import ObjectRef
from shared.files.progress import FileProgress, Progress
from shared.metrics import FILES
from shared.pipeline.assemble import job_store
from shared.runtime import ServiceParts
from shared.settings import Settings
from tests.helpers import Env, eventually, free_port, job_in, running
from tools.bench.bankfiles.gen import document
from tools.stack import file_drops
from tools.webhook_receiver import Receiver

pytestmark = pytest.mark.own_stack(
    "its workers take every file event and "
    "it counts every job a file makes")

EXAMPLES = resources.files("shared.contracts").joinpath("examples", "iso20022")
SECRET = "whsec_cmVtaXRmbG93LWRlbW8td2ViaG9vay1zZWNyZXQtMzJi"
OK = ("COMPLETED",)
#: Example file → the jobs it must create (request id → remittance end state).
EXPECTED: dict[str, dict[str, tuple[str, ...]]] = {
    "pain.002.001.10-accepted-and-rejected.xml": {
        "ISO-FIRSTBANK-E2E-FB-0001": OK, "ISO-FIRSTBANK-E2E-FB-0002": OK,
        "ISO-FIRSTBANK-E2E-FB-0003": OK},
    "pain.002.001.03-sepa-rejected.xml": {
        "ISO-FIRSTBANK-E2E-EC-0001": OK, "ISO-FIRSTBANK-E2E-EC-0002": OK},
    "camt.054.001.02-entries.xml": {
        "ISO-FIRSTBANK-E2E-FB-0101": OK, "ISO-FIRSTBANK-FB-TX-0102": OK,
        "ISO-FIRSTBANK-E2E-FB-0103": OK},
    "camt.054.001.08-batch.xml": {
        "ISO-FIRSTBANK-E2E-EC-0201": OK, "ISO-FIRSTBANK-E2E-EC-0202": OK,
        "ISO-FIRSTBANK-E2E-EC-0203": OK},
}


def bucket(env: Env) -> str:
    return file_drops(env.settings)[0].bucket_name(env.settings.prefix)


async def upload(env: Env, key: str, data: bytes) -> None:
    await env.clients.s3.put_object(Bucket=bucket(env), Key=key, Body=data)


async def progress(env: Env, key: str) -> Progress:
    head = await env.clients.s3.head_object(Bucket=bucket(env), Key=key)
    ref = ObjectRef(bucket(env), key, head["ETag"].strip('"'), head["ContentLength"])
    return await FileProgress.for_prefix(env.clients.dynamodb, env.settings.prefix).get(ref)


async def finished(env: Env, key: str, state: str = "done", timeout_s: float = 60) -> Progress:
    async def probe() -> Progress | None:
        p = await progress(env, key)
        return p if p.state == state else None
    return await eventually(probe, timeout_s=timeout_s, what=f"{key} {state}")


async def jobs(env: Env) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    async for page in env.clients.dynamodb.get_paginator("scan").paginate(
            TableName=env.names.remittances, ConsistentRead=True):
        for item in page.get("Items", []):
            row = from_item(item)
            out[row["request_id"]] = row
    return out


async def file_dlq(env: Env) -> list[dict[str, str]]:
    """The partner-files DLQ as ``remitflow.*`` attribute dicts (plus the body)."""
    out = []
    for m in await env.drain(env.names.dlq(env.names.partner_files_queue)):
        attrs = {k.removeprefix("remitflow."): v["StringValue"]
                 for k, v in m.get("MessageAttributes", {}).items()}
        out.append({**attrs, "body": m["Body"]})
    return out


def duplicates_seen(queue: str) -> float:
    return float(FILES.labels(queue=queue, outcome="duplicate")._value.get())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET, port=0).start()
    yield r
    r.stop()


async def test_examples_make_exactly_their_jobs_and_reuploads_none(
        env: Env, receiver: Receiver) -> None:
    payees = json.loads(resources.files("shared.contracts").joinpath(
        "examples", "reference-data.json").read_text())["payees"]
    hooked = dict(next(p for p in payees if p["payee_id"] == "PAYEE-0003"),
                  webhook_url=f"http://127.0.0.1:{receiver.port}/hooks/remittance")
    await env.clients.dynamodb.put_item(TableName=env.names.payees, Item=to_item(hooked))
    expected = {rid: states for per_file in EXPECTED.values() for rid, states in per_file.items()}
    async with running(env, build_enrichment), running(env, build_notification):
        for name in EXPECTED:
            await upload(env, f"FIRSTBANK/2026-11-24/{name}", EXAMPLES.joinpath(name).read_bytes())
        for rid, states in expected.items():
            await job_in(env.store(), rid, *states, timeout_s=90)
            await job_in(env.store("notifications"), rid, "SENT", timeout_s=60)
        before = await jobs(env)
        assert set(before) == set(expected)

        # Same key again (same ETag: the event is a duplicate) and the same bytes under a
        # new key (read again: every transaction is a duplicate job, none conflicts).
        name = "pain.002.001.10-accepted-and-rejected.xml"
        seen = duplicates_seen(env.names.partner_files_queue)
        await upload(env, f"FIRSTBANK/2026-11-24/{name}", EXAMPLES.joinpath(name).read_bytes())
        await upload(env, f"FIRSTBANK/resent/{name}", EXAMPLES.joinpath(name).read_bytes())
        await finished(env, f"FIRSTBANK/resent/{name}")

        async def duplicate_counted() -> bool:
            return duplicates_seen(env.names.partner_files_queue) > seen
        await eventually(duplicate_counted, what="duplicate S3 event acknowledged")
        after = await jobs(env)
    assert {rid: j["version"] for rid, j in after.items()} == {
        rid: j["version"] for rid, j in before.items()}
    reports = await file_dlq(env)
    assert [(r["reason"], r["index"]) for r in reports] == [("unexpected_credit", "3")]
    assert reports[0]["key"].endswith("camt.054.001.08-batch.xml")
    for name in EXPECTED:
        assert (await progress(env, f"FIRSTBANK/2026-11-24/{name}")).state == "done"


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that records every request (an XXE target)."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"leaked")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()


async def test_bad_files_are_quarantined_and_fetch_nothing(
        env: Env, recorder: tuple[str, list[str]]) -> None:
    url, hits = recorder
    xxe = EXAMPLES.joinpath("xxe.xml").read_bytes().replace(
        b"http://127.0.0.1:9/xxe", f"{url}/xxe".encode())
    files = {"FIRSTBANK/xxe.xml": (xxe, "unsafe_xml"),
             "FIRSTBANK/billion-laughs.xml": (
                 EXAMPLES.joinpath("billion-laughs.xml").read_bytes(), "unsafe_xml"),
             "FIRSTBANK/not-xml.csv": (EXAMPLES.joinpath("not-xml.csv").read_bytes(), "not_xml"),
             "FIRSTBANK/invalid.xml": (EXAMPLES.joinpath(
                 "camt.054.001.08-schema-invalid.xml").read_bytes(), "schema_invalid"),
             "no-partner.xml": (EXAMPLES.joinpath(
                 "camt.054.001.08-batch.xml").read_bytes(), "bad_key")}
    async with running(env, build_enrichment):
        for key, (data, _) in files.items():
            await upload(env, key, data)
        for key, (_, reason) in files.items():
            assert (await finished(env, key, "quarantined")).reason == reason
    for key, (_, reason) in files.items():
        tags = await env.clients.s3.get_object_tagging(Bucket=bucket(env), Key=key)
        assert {"Key": "remitflow-quarantine", "Value": reason} in tags["TagSet"]
    reports = await file_dlq(env)
    assert sorted((r["key"], r["reason"]) for r in reports) == sorted(
        (key, reason) for key, (_, reason) in files.items())
    assert all(json.loads(r["body"])["key"] == r["key"] for r in reports)
    assert hits == []
    assert await jobs(env) == {}


def start_enrichment(env: Env, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    proc_env = {**os.environ, "REMITFLOW_PREFIX": env.settings.prefix,
                "REMITFLOW_HTTP_PORT": str(free_port()), "REMITFLOW_HTTP_HOST": "127.0.0.1",
                "REMITFLOW_RECEIVE_WAIT_S": "1", "REMITFLOW_VISIBILITY_TIMEOUT_S": "5",
                "REMITFLOW_STREAM_POLL_INTERVAL_S": "0.2", "REMITFLOW_LEASE_TTL_S": "3",
                "REMITFLOW_STREAM_FAILOVER_S": "3", "REMITFLOW_SHUTDOWN_GRACE_S": "5",
                "REMITFLOW_PARTNER_FILES_CHECKPOINT_EVERY": "25", **extra}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tools.cli", "run", "enrichment"],
                                env=proc_env, stdout=out, stderr=subprocess.STDOUT)


async def test_kill_mid_file_resumes_and_processes_each_transaction_once(
        env: Env, tmp_path: Path) -> None:
    count, bad = 60, 7
    key = "FIRSTBANK/generated-60.xml"
    await upload(env, key, document(count, frozenset({bad})))
    log = tmp_path / "enrichment.log"
    victim = start_enrichment(env, log, REMITFLOW_FAULT_POINT="bankfiles.after_transaction",
                              REMITFLOW_FAULT_AFTER="30")
    try:
        async def died() -> bool:
            return victim.poll() is not None
        await eventually(died, timeout_s=60, what="crash after 30 transactions")
        assert victim.returncode == 137
        crashed_at = await progress(env, key)
        assert crashed_at.state == "reading" and 0 < crashed_at.next_index < count
        survivor = start_enrichment(env, log)
        try:
            await finished(env, key, timeout_s=90)
        finally:
            survivor.terminate()
            survivor.wait(timeout=20)
    finally:
        if victim.poll() is None:
            victim.kill()
    expected = {f"ISO-FIRSTBANK-E2E-GEN-{i:07d}" for i in range(count) if i != bad}
    assert set(await jobs(env)) == expected
    reports = await file_dlq(env)
    assert [(r["reason"], r["index"]) for r in reports] == [("invalid_amount", str(bad))]
    events = [json.loads(line) for line in log.read_text().splitlines()
              if line.startswith("{") and '"bankfile.started"' in line]
    assert [e["resume_at"] for e in events] == [0, crashed_at.next_index]


def cli(env: Env, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "tools.cli", *args],
                          env={**os.environ, "REMITFLOW_PREFIX": env.settings.prefix},
                          capture_output=True, timeout=60, check=True)
    return proc.stdout.decode()


async def test_cli_send_file_uploads_under_the_partner_prefix(env: Env) -> None:
    name = "camt.054.001.02-entries.xml"
    out = cli(env, "send", "--file", str(EXAMPLES.joinpath(name)), "--partner", "EUROCLEARING")
    key = f"EUROCLEARING/{name}"
    assert f"s3://{bucket(env)}/{key}" in out
    body = (await env.clients.s3.get_object(Bucket=bucket(env), Key=key))["Body"]
    assert await body.read() == EXAMPLES.joinpath(name).read_bytes()


async def only_file_intake(settings: Settings, clients: AwsClients) -> ServiceParts:
    """The enrichment service's partner-files worker alone (no workflows competing)."""
    return ServiceParts(workers=[await file_intake(settings, clients,
                                                   job_store(settings, clients, ENRICHMENT))])


async def test_shutdown_mid_file_saves_progress_and_hands_the_file_back(env: Env) -> None:
    count, key = 200, "FIRSTBANK/generated-200.xml"
    fast = env.with_settings(partner_files_checkpoint_every=20)
    await upload(env, key, document(count))
    async with running(fast, only_file_intake):
        async def started() -> bool:
            return (await progress(env, key)).next_index > 0
        await eventually(started, what="first checkpoint")
    stopped = await progress(env, key)
    assert stopped.state == "reading" and stopped.next_index < count
    url = await env.queue_url(env.names.partner_files_queue)
    attrs = await env.clients.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "1"
    async with running(fast, only_file_intake):
        await finished(env, key, timeout_s=120)
    assert len(await jobs(env)) == count
