"""Logs never carry secrets: run both services for real and grep everything they logged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from shared.aws.dynamo import to_item
from tests.helpers import Env, free_port, job_in
from tools.demo import generate_messages
from tools.webhook_receiver import Receiver

SECRET = "whsec_cmVtaXRmbG93LWRlbW8td2ViaG9vay1zZWNyZXQtMzJi"
TOKEN = "tok-9f8e7d6c5b4a39281706"
EMAIL = "ap.payments@ada-books.example"
ACCOUNT = "000123456789"


def _start(service: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "tools.cli", "run", service],
                                env=env, stdout=out, stderr=subprocess.STDOUT)


async def test_logs_of_a_whole_run_hold_no_secrets(env: Env, tmp_path: Path) -> None:
    receiver = Receiver(SECRET, port=0).start()
    payees = [
        {"payee_id": "PAYEE-R1", "name": "Ada", "email": EMAIL, "payee_type": "author",
         "country": "US", "locale": "en-US", "channel": "email", "account_last4": "6789",
         "account_number": ACCOUNT},
        {"payee_id": "PAYEE-R2", "name": "Hook", "payee_type": "utility", "country": "JP",
         "locale": "ja-JP", "channel": "webhook", "webhook_secret": SECRET,
         "webhook_url": f"http://127.0.0.1:{receiver.port}/h"},
    ]
    for payee in payees:
        await env.clients.dynamodb.put_item(TableName=env.names.payees, Item=to_item(payee))
    messages = []
    for n, payee in enumerate(payees):
        invoice = {"invoice_id": f"INV-R{n}", "payee_id": payee["payee_id"], "amount": "10.00",
                   "currency": "USD", "description": f"acct {ACCOUNT}", "purpose": "royalty"}
        await env.clients.dynamodb.put_item(TableName=env.names.invoices, Item=to_item(invoice))
        messages.append(dict(generate_messages(1, prefix=f"REQ-REDACT-{n}")[0],
                             payee_id=payee["payee_id"], invoice_ids=[invoice["invoice_id"]],
                             amount="10.00", currency="USD", partner_reference=ACCOUNT))
    logs = {s: tmp_path / f"{s}.log" for s in ("enrichment", "notification")}
    procs = []
    for service, path in logs.items():
        proc_env = {**os.environ, "REMITFLOW_PREFIX": env.settings.prefix,
                    "REMITFLOW_HTTP_PORT": str(free_port()), "REMITFLOW_HTTP_HOST": "127.0.0.1",
                    "REMITFLOW_API_TOKEN": TOKEN, "REMITFLOW_RECEIVE_WAIT_S": "1",
                    "REMITFLOW_WEBHOOK_ALLOW_PRIVATE": "true", "REMITFLOW_LOG_LEVEL": "DEBUG"}
        procs.append(_start(service, path, proc_env))
    try:
        await env.send(*messages)
        for m in messages:
            await job_in(env.store("notifications"), m["request_id"], "SENT", timeout_s=90)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        receiver.stop()
    text = "".join(p.read_text() for p in logs.values())
    assert "notify.emailed" in text and "notify.webhook_delivered" in text, "the run was logged"
    for secret in (SECRET, SECRET.removeprefix("whsec_"), TOKEN, EMAIL, ACCOUNT):
        assert secret not in text, f"{secret[:6]}… leaked into the logs"
