"""Shared fixtures: one emulator process per session, a fresh prefix (own resources) per test.

The emulator is moto server in its own process on a free loopback port, spoken to
over real HTTP; nothing in the AWS APIs is mocked.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from shared.aws.clients import AwsClients
from shared.aws.emulator import wait_until_up
from shared.pipeline.bootstrap import load_reference_data
from tests.helpers import Env, free_port, test_settings
from tools.demo import reference_data
from tools.stack import bootstrap_stack

SESSION_API_TOKEN = "session-" + secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def emulator() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "MOTO_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "emulator", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until_up("127.0.0.1", port, timeout_s=30)
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1",
                           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           # Services refuse to start without one (secure by default).
                           "REMITFLOW_API_TOKEN": SESSION_API_TOKEN})
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def env(emulator: str) -> AsyncIterator[Env]:
    """Freshly bootstrapped resources under a unique prefix, with the demo reference data."""
    prefix = "t" + uuid.uuid4().hex[:10]
    settings = test_settings(prefix)
    async with AwsClients(settings) as clients:
        await bootstrap_stack(settings, clients)
        await load_reference_data(clients, settings, reference_data())
        yield Env(settings=settings, clients=clients, endpoint=emulator)


fresh_env = env
