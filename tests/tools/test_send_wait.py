"""``remitflow send --file F --wait`` tells the uploader what became of the file
(on main it printed ``uploaded`` and exited 0 whatever happened next)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from importlib import resources

import pytest

from services.enrichment.kind import ENRICHMENT
from services.enrichment.service import file_intake
from shared.aws.clients import AwsClients
from shared.pipeline.assemble import job_store
from shared.runtime import ServiceParts
from shared.settings import Settings
from tests.helpers import Env, running

pytestmark = pytest.mark.own_stack("its workers take every event on the partner-files queue")

EXAMPLES = resources.files("shared.contracts").joinpath("examples", "iso20022")


async def only_file_intake(settings: Settings, clients: AwsClients) -> ServiceParts:
    return ServiceParts(workers=[await file_intake(settings, clients,
                                                   job_store(settings, clients, ENRICHMENT))])


async def send_wait(env: Env, name: str, partner: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.cli", "send", "--file", str(EXAMPLES.joinpath(name)),
        "--partner", partner, "--wait", "--wait-s", "60",
        env={**os.environ, "REMITFLOW_PREFIX": env.settings.prefix},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_send_wait_prints_the_outcome_and_fails_on_quarantine(env: Env) -> None:
    partner = "T" + uuid.uuid4().hex[:10].upper()
    async with running(env, only_file_intake):
        good_code, good = await send_wait(env, "pain.002.001.03-accepted-and-rejected.xml",
                                          partner)
        batch_code, batch = await send_wait(env, "pain.002.001.10-batch-rejected.xml", partner)
        bad_code, bad = await send_wait(env, "camt.054.001.08-schema-invalid.xml", partner)
    assert good_code == 0, good
    assert "processed" in good and "transactions created: 4" in good
    assert "read as pain.002.001.03 (ISO 20022), validated against ISO 20022 pain.002.001.03" \
        in good
    assert batch_code == 0, batch
    assert "payment PMTINF-1001: RJCT AM04 Insufficient funds, 40 transactions" in batch
    assert bad_code == 1, bad
    assert "quarantined: schema_invalid" in bad and "detail: Ntry #" in bad
