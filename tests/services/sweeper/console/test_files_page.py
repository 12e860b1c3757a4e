"""The console's Files page: every file with its outcome, and a retry of a
quarantined file once its cause is fixed, idempotent (a second retry does nothing,
a re-read stores nothing twice)."""

from __future__ import annotations

import re
import uuid
from importlib import resources
from typing import Any

import pytest

from services.enrichment.kind import ENRICHMENT
from services.enrichment.service import file_intake
from shared.aws.clients import AwsClients
from shared.files.drop import ObjectRef
from shared.files.progress import FileProgress, Progress
from shared.pipeline.assemble import job_store
from shared.runtime import ServiceParts
from shared.settings import Settings
from tests.helpers import CONSOLE_TOKEN, Env, console, eventually, running
from tools.stack import file_drops

pytestmark = pytest.mark.own_stack("lists every file record of the table")

EXAMPLES = resources.files("shared.contracts").joinpath("examples", "iso20022")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def only_file_intake(settings: Settings, clients: AwsClients) -> ServiceParts:
    return ServiceParts(workers=[await file_intake(settings, clients,
                                                   job_store(settings, clients, ENRICHMENT))])


async def state_of(env: Env, ref: ObjectRef, *states: str) -> Progress:
    records = FileProgress.for_prefix(env.clients.dynamodb, env.settings.prefix)

    async def probe() -> Progress | None:
        got = await records.get(ref)
        return got if got.state in states else None
    return await eventually(probe, timeout_s=60, what=f"{ref.key} {states}")


async def jobs_of(env: Env, code: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async for page in env.clients.dynamodb.get_paginator("scan").paginate(
            TableName=env.names.remittances, ConsistentRead=True):
        out |= {i["request_id"]["S"]: i["version"]["N"] for i in page.get("Items", [])
                if f"-{code}-" in i["request_id"]["S"]}
    return out


async def test_files_page_shows_outcomes_and_retries_a_quarantined_file_once(
        env: Env) -> None:
    code = "T" + uuid.uuid4().hex[:10].upper()
    bucket = file_drops(env.settings)[0].bucket_name(env.settings.prefix)
    data = EXAMPLES.joinpath("pain.002.001.03-accepted-and-rejected.xml").read_bytes()
    key = f"{code}/status.xml"
    put = await env.clients.s3.put_object(Bucket=bucket, Key=key, Body=data)
    ref = ObjectRef(bucket, key, put["ETag"].strip('"'), len(data))
    # The cause: a size limit below the file (an operator then raises it).
    async with running(env.with_settings(partner_files_max_bytes=1024), only_file_intake):
        await state_of(env, ref, "quarantined")
    tags = await env.clients.s3.get_object_tagging(Bucket=bucket, Key=key)
    assert {"Key": "remitflow-quarantine", "Value": "too_large"} in tags["TagSet"]
    record_id = FileProgress.key(ref)
    async with console(env) as http:
        page = await http.get("/console/login")
        await http.post("/console/login", data={
            "csrf": CSRF.search(page.text).group(1),  # type: ignore[union-attr]
            "token": CONSOLE_TOKEN, "next": "/console"})
        listing = await http.get("/console/files")
        assert listing.status_code == 200
        row = next(r for r in listing.text.split("<tr") if key in r)
        assert "quarantined: too_large" in row
        detail = await http.get("/console/files/file", params={"id": record_id})
        assert "object of" in detail.text and "is over 1024" in detail.text
        assert 'id="retry"' in detail.text
        csrf = CSRF.search(detail.text).group(1)  # type: ignore[union-attr]

        async with running(env, only_file_intake):
            first = await http.post("/console/files/retry", data={"csrf": csrf, "id": record_id})
            assert first.status_code == 200 and "Queued for re-processing" in first.text
            again = await http.post("/console/files/retry", data={"csrf": csrf, "id": record_id})
            assert "Nothing to do" in again.text
            done = await state_of(env, ref, "done")
        assert done.summary.counts == {"stored": 4}
        tags = await env.clients.s3.get_object_tagging(Bucket=bucket, Key=key)
        assert not [t for t in tags["TagSet"] if t["Key"] == "remitflow-quarantine"]
        stored = await jobs_of(env, code)
        assert len(stored) == 4
        listing = await http.get("/console/files")
        row = next(r for r in listing.text.split("<tr") if key in r)
        assert "processed" in row and "pain.002.001.03" in row
        detail = await http.get("/console/files/file", params={"id": record_id})
        assert "transactions created: 4" in detail.text and 'id="retry"' not in detail.text
        forged = await http.post("/console/files/retry", data={"csrf": "forged", "id": record_id})
        assert forged.status_code == 403
    assert await jobs_of(env, code) == stored  # nothing written twice
