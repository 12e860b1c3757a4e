"""An answer for every file: what the file intake records, counts and reports for
files banks really send (base pain.002.001.03 with ACSC, camt.054.001.04, the Swiss
ch.02 variant, a batch rejected without transactions). Real S3 uploads, the
emulator's own S3 events, the worker in-process."""

from __future__ import annotations

import json
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from services.enrichment.kind import ENRICHMENT
from services.enrichment.service import file_intake
from shared.aws.clients import AwsClients
from shared.files.drop import ObjectRef
from shared.files.progress import FileProgress, Progress
from shared.metrics import FILE_STATUS_REPORTS
from shared.pipeline.assemble import job_store
from shared.runtime import ServiceParts
from shared.settings import Settings
from tests.helpers import Env, eventually, running
from tools.stack import file_drops

pytestmark = pytest.mark.own_stack("its workers take every event on the partner-files queue")

EXAMPLES = resources.files("shared.contracts").joinpath("examples", "iso20022")
CORPUS = Path(__file__).resolve().parent / "corpus"


async def only_file_intake(settings: Settings, clients: AwsClients) -> ServiceParts:
    return ServiceParts(workers=[await file_intake(settings, clients,
                                                   job_store(settings, clients, ENRICHMENT))])


def partner() -> str:
    """A partner code of this test alone (its request ids are its own)."""
    return "T" + uuid.uuid4().hex[:12].upper()


async def upload(env: Env, key: str, data: bytes) -> ObjectRef:
    bucket = file_drops(env.settings)[0].bucket_name(env.settings.prefix)
    put = await env.clients.s3.put_object(Bucket=bucket, Key=key, Body=data)
    return ObjectRef(bucket, key, put["ETag"].strip('"'), len(data))


async def record(env: Env, ref: ObjectRef, *states: str) -> Progress:
    progress = FileProgress.for_prefix(env.clients.dynamodb, env.settings.prefix)

    async def probe() -> Progress | None:
        got = await progress.get(ref)
        return got if got.state in states else None
    return await eventually(probe, timeout_s=60, what=f"{ref.key} in {states}")


async def job_ids(env: Env, code: str) -> set[str]:
    out: set[str] = set()
    async for page in env.clients.dynamodb.get_paginator("scan").paginate(
            TableName=env.names.remittances, ConsistentRead=True):
        out |= {i["request_id"]["S"] for i in page.get("Items", [])
                if f"-{code}-" in i["request_id"]["S"]}
    return out


async def test_files_banks_send_are_read_and_their_record_says_how(env: Env) -> None:
    """On main: base pain.002.001.03 with ACSC was schema_invalid (DK profile), and
    camt.054.001.04 and pain.002.001.03.ch.02 were unknown_message_type."""
    code = partner()
    files = {
        "pain.002.001.03-accepted-and-rejected.xml":
            EXAMPLES.joinpath("pain.002.001.03-accepted-and-rejected.xml").read_bytes(),
        "postfinance-camt.054.001.04-esr-asr-debit.xml":
            (CORPUS / "postfinance-camt.054.001.04-esr-asr-debit.xml").read_bytes(),
        "ch02.xml": (CORPUS / "viafintech-pain.002.001.03.ch.02-group-accepted.xml").read_bytes(),
    }
    async with running(env, only_file_intake):
        refs = {name: await upload(env, f"{code}/{name}", data) for name, data in files.items()}
        done = {name: await record(env, ref, "done", "quarantined") for name, ref in refs.items()}
    assert {name: r.state for name, r in done.items()} == dict.fromkeys(files, "done")
    base = done["pain.002.001.03-accepted-and-rejected.xml"].summary
    assert base.counts == {"stored": 4}
    assert base.info["message_type"] == "pain.002.001.03"
    assert base.info["schema"] == "ISO 20022 pain.002.001.03"
    assert done["postfinance-camt.054.001.04-esr-asr-debit.xml"].summary.info[
        "message_type"] == "camt.054.001.04"
    ch = done["ch02.xml"].summary
    assert ch.info["variant"] == "CH (SIX) ch.02"
    assert "base" in ch.info["schema"]
    assert ch.counts == {"reported": 1}
    assert ch.notes[0]["level"] == "group" and ch.notes[0]["status"] == "ACTC"
    assert {f"ISO-{code}-E2E-FB-030{i}" for i in range(1, 5)} <= await job_ids(env, code)


async def test_a_batch_rejected_without_transactions_reaches_the_operator(
        fresh_env: Env) -> None:
    """On main: 'processed' with 0 transactions, and nobody hears of it."""
    env, code = fresh_env, partner()
    before = FILE_STATUS_REPORTS.labels(
        queue=env.names.partner_files_queue, level="payment", status="RJCT")._value.get()
    data = EXAMPLES.joinpath("pain.002.001.10-batch-rejected.xml").read_bytes()
    async with running(env, only_file_intake):
        ref = await upload(env, f"{code}/batch-rejected.xml", data)
        got = await record(env, ref, "done", "quarantined")
    assert got.state == "done"
    assert got.summary.counts == {"reported": 1, "stored": 1}
    note: dict[str, Any] = got.summary.notes[0]
    assert (note["level"], note["status"], note["reason"], note["reference"],
            note["transactions"]) == ("payment", "RJCT", "AM04", "PMTINF-1001", 40)
    assert FILE_STATUS_REPORTS.labels(
        queue=env.names.partner_files_queue, level="payment",
        status="RJCT")._value.get() == before + 1
    dlq = await env.drain(env.names.dlq(env.names.partner_files_queue))
    mine = [m for m in dlq if json.loads(m["Body"]).get("key") == ref.key]
    assert len(mine) == 1
    attrs = {k: v["StringValue"] for k, v in mine[0]["MessageAttributes"].items()}
    assert attrs["remitflow.reason"] == "payment_rejected"
    assert "PMTINF-1001" in attrs["remitflow.detail"] and "AM04" in attrs["remitflow.detail"]
    assert await job_ids(env, code) == {f"ISO-{code}-E2E-FB-1002-01"}
