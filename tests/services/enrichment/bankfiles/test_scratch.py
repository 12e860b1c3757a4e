"""Bank files and the pod's disk (issue 24, scenario 3): a file is written to
scratch space once, and a file larger than the scratch space a file may use
(``REMITFLOW_PARTNER_FILES_MAX_BYTES``; the chart derives the emptyDir from it)
is quarantined before a byte of it is downloaded.

Disk writes are the worker process's ``wchar`` (/proc/self/io: bytes passed to
write()); the emulator is another process, and socket sends are not counted.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.enrichment.kind import ENRICHMENT
from services.enrichment.service import file_intake
from shared.aws.clients import AwsClients
from shared.files.drop import ObjectRef
from shared.files.progress import FileProgress, Progress
from shared.pipeline.assemble import job_store
from shared.runtime import ServiceParts
from shared.settings import Settings
from tests.helpers import Env, eventually, running
from tools.bench.bankfiles.gen import entry, with_entries
from tools.stack import file_drops

pytestmark = pytest.mark.own_stack("its workers take every event on the partner-files queue")

MiB = 1 << 20
SCRATCH = 16 * MiB


def written() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def pending_entries(size: int) -> bytes:
    """A valid camt.054.001.08 of about ``size`` bytes whose entries are all pending
    (not final: counted, nothing written to the job table)."""
    one = entry(0).replace("<Cd>BOOK</Cd>", "<Cd>PDNG</Cd>")
    return with_entries(*[one.replace("<NtryRef>0<", f"<NtryRef>{i}<")
                          for i in range(size // len(one) + 1)])


async def only_file_intake(settings: Settings, clients: AwsClients) -> ServiceParts:
    return ServiceParts(workers=[await file_intake(settings, clients,
                                                   job_store(settings, clients, ENRICHMENT))])


async def handled(env: Env, key: str, data: bytes) -> tuple[Progress, int]:
    """Upload, let the worker finish the file; (its record, bytes written meanwhile)."""
    bucket = file_drops(env.settings)[0].bucket_name(env.settings.prefix)
    put = await env.clients.s3.put_object(Bucket=bucket, Key=key, Body=data)
    ref = ObjectRef(bucket, key, put["ETag"].strip('"'), len(data))
    records = FileProgress.for_prefix(env.clients.dynamodb, env.settings.prefix)
    before = written()

    async def finished() -> Progress | None:
        got = await records.get(ref)
        return got if got.finished else None
    record = await eventually(finished, timeout_s=240, what=f"{key} finished")
    return record, written() - before


async def test_a_file_is_written_to_scratch_once_and_a_larger_one_not_at_all(
        env: Env) -> None:
    code = "T" + uuid.uuid4().hex[:10].upper()
    small = env.with_settings(partner_files_max_bytes=SCRATCH, partner_files_max_in_flight=1,
                              partner_files_checkpoint_every=5000)
    fits, too_big = pending_entries(12 * MiB), pending_entries(SCRATCH + 4 * MiB)
    async with running(small, only_file_intake):
        record, wrote = await handled(small, f"{code}/fits.xml", fits)
        assert record.state == "done" and record.summary.counts["not_final"] > 20_000
        # once: the download; on main the reader spooled it again past 8 MiB (2 x 12 MiB)
        assert len(fits) <= wrote < len(fits) + 2 * MiB, wrote
        assert wrote < SCRATCH

        record, wrote = await handled(small, f"{code}/too-big.xml", too_big)
    assert record.state == "quarantined" and record.reason == "too_large"
    assert record.summary.info["detail"].startswith(
        f"object of {len(too_big)} bytes is over {SCRATCH}")
    assert wrote < MiB, wrote  # not downloaded
