"""Logs never carry secrets or PII: run both services for real and grep everything they logged.

Every kind the redaction covers reaches the logs on purpose: through our own
events (a rejected job's cause names the partner's payee and invoice ids),
through standard-library loggers (botocore at DEBUG prints every request and
response body) and through tracebacks (a real process logging and dying).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shared.aws.dynamo import to_item
from tests.helpers import Env, free_port, job_in
from tools.demo import generate_messages
from tools.webhook_receiver import Receiver

pytestmark = pytest.mark.own_stack(
    "greps the logs of a whole "
    "run, which would process other tests' leftovers")

SECRET = "whsec_cmVtaXRmbG93LWRlbW8td2ViaG9vay1zZWNyZXQtMzJi"
TOKEN = "tok-9f8e7d6c5b4a39281706"
EMAIL = "ap.payments@ada-books.example"
ACCOUNT = "000123456789"
IBAN = "DE44500105175407324931"
IBAN_SPACED = "GB82 WEST 1234 5698 7654 32"
CARD_SPACES = "4111 1111 1111 1111"
CARD_DASHES = "5500-0000-0000-0004"
ACCOUNT8 = "87654321"
LOCAL_PART = "grace.hopper"
PII = (IBAN, IBAN_SPACED, CARD_SPACES, CARD_DASHES, ACCOUNT8, f"{LOCAL_PART}@")


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
    # Rejected: unknown payee and invoices, each id carrying one kind of PII.
    messages.append(dict(generate_messages(1, prefix="REQ-REDACT-PII")[0],
                         payee_id=f"IBAN {IBAN} / {IBAN_SPACED}",
                         invoice_ids=[CARD_SPACES, CARD_DASHES, ACCOUNT8,
                                      f"{LOCAL_PART}@example.org"],
                         partner_reference=f"Bearer {TOKEN}"))
    logs = {s: tmp_path / f"{s}.log" for s in ("enrichment", "notification")}
    procs = []
    for service, path in logs.items():
        proc_env = {**os.environ, "REMITFLOW_PREFIX": env.settings.prefix,
                    "REMITFLOW_HTTP_PORT": str(free_port()), "REMITFLOW_HTTP_HOST": "127.0.0.1",
                    "REMITFLOW_API_TOKEN": TOKEN, "REMITFLOW_RECEIVE_WAIT_S": "1",
                    "REMITFLOW_WEBHOOK_ALLOW_PRIVATE": "true", "REMITFLOW_LOG_LEVEL": "DEBUG",
                    "REMITFLOW_LOG_LEVEL_LIBRARIES": "DEBUG"}
        procs.append(_start(service, path, proc_env))
    try:
        await env.send(*messages)
        for m in messages[:-1]:
            await job_in(env.store("notifications"), m["request_id"], "SENT", timeout_s=90)
        await job_in(env.store(), messages[-1]["request_id"], "REJECTED", timeout_s=60)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        receiver.stop()
    text = "".join(p.read_text() for p in logs.values())
    assert "notify.emailed" in text and "notify.webhook_delivered" in text, "the run was logged"
    assert '"event": "task.failed"' in text and "UnknownPayee" in text, "the rejection was logged"
    assert '"event": "log.botocore' in text, "standard-library loggers went through redaction"
    assert "AWS4-HMAC-SHA256 Credential" not in text, "request signatures are redacted"
    for secret in (SECRET, SECRET.removeprefix("whsec_"), TOKEN, EMAIL, ACCOUNT, *PII):
        assert secret not in text, f"{secret[:6]}… leaked into the logs"


SCRIPT = f"""
import logging, structlog
from shared.logs import configure_logging
configure_logging("INFO", "json", service="t")
text = "iban {IBAN} card {CARD_SPACES} / {CARD_DASHES} acct {ACCOUNT8} to {EMAIL} Bearer {TOKEN}"
try:
    raise RuntimeError(text)
except RuntimeError:
    logging.getLogger("uvicorn.error").exception("request failed: %s", text)
    structlog.get_logger("ours").exception("ours.failed", detail=text)
raise ValueError(text)
"""


def test_tracebacks_are_redacted_stdlib_structlog_and_uncaught() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert err.count("Traceback (most recent call last)") >= 2 and "ValueError" in err
    assert '"event": "log.uvicorn.error"' in err and '"event": "ours.failed"' in err
    for value in (IBAN, CARD_SPACES, CARD_DASHES, ACCOUNT8, EMAIL, TOKEN):
        assert value not in err, f"{value[:6]}… leaked into a traceback"
