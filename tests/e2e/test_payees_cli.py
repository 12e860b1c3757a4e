"""``remitflow payees erase`` as an operator runs it: the CLI against a real sweeper.

The erasure itself is held by ``tests/shared/operations/test_lifecycle.py`` (every
table and archive object scanned); this checks the command a person types: it
reaches ``POST /v1/payees/{id}/erase`` with the token from the environment, prints
the report, exits 0, and the erasure is audited with the note. Without a token it
is refused and exits 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

from shared.aws.dynamo import to_item
from shared.operations.sealing import SUBJECT_KEYS
from tests.helpers import Env, service_process


def erase(url: str, payee_id: str, note: str, token: str | None
          ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REMITFLOW_API_TOKEN"}
    if token is not None:
        env["REMITFLOW_API_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "tools.cli", "payees", "erase", payee_id,
                           "--note", note, "--url", url],
                          capture_output=True, text=True, env=env, timeout=60)


async def test_payees_erase_from_the_command_line(env: Env) -> None:
    tag = uuid.uuid4().hex[:8].upper()
    payee_id = f"PAYEE-CLI-{tag}"
    name = f"Ada Lovelace {tag}"
    await env.clients.dynamodb.put_item(TableName=env.names.payees, Item=to_item({
        "payee_id": payee_id, "name": name, "email": f"ada-{tag.lower()}@example.com",
        "payee_type": "individual", "country": "GB", "locale": "en-GB", "channel": "email",
        "account_last4": "1815"}))
    token = os.environ["REMITFLOW_API_TOKEN"]
    with service_process(env, "sweeper") as (url, _proc):
        refused = await asyncio.to_thread(erase, url, payee_id, "no token", None)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        done = await asyncio.to_thread(erase, url, payee_id, "GDPR art. 17 #7", token)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["payee_id"] == payee_id and report["note"] == "GDPR art. 17 #7"
    assert report["by"].startswith("api token ")
    assert name not in done.stdout, "the report names what was erased, never the data"
    item = (await env.clients.dynamodb.get_item(
        TableName=env.names.payees, Key=to_item({"payee_id": payee_id}),
        ConsistentRead=True)).get("Item", {})
    assert name not in json.dumps(item) and "1815" not in json.dumps(item)
    audit = (await env.clients.dynamodb.get_item(
        TableName=env.names.name(SUBJECT_KEYS), Key=to_item({"subject_id": payee_id}),
        ConsistentRead=True))["Item"]
    assert audit["note"]["S"] == "GDPR art. 17 #7"
