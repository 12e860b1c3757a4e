"""Demo traffic: the contract examples, generated remittances, and deliberate faults."""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from typing import Any

from shared.aws.clients import AwsClients
from shared.files.drop import ObjectRef
from shared.files.progress import FileProgress, Progress
from shared.settings import Settings
from tools.stack import StackNames as Names
from tools.stack import file_drops

# Fault injection used by `remitflow dev` so the retry and FAILED paths are visible.
DEMO_FAULTS = r"transient-once:REQ-DEMO-FLAKY-.*,transient-always:REQ-DEMO-BROKEN-.*"


def examples_dir() -> Any:
    return resources.files("shared.contracts").joinpath("examples")


def reference_data() -> dict[str, list[dict[str, Any]]]:
    data: dict[str, list[dict[str, Any]]] = json.loads(
        examples_dir().joinpath("reference-data.json").read_text())
    return data


def _payments() -> list[tuple[str, list[str], str, str]]:
    """(payee_id, invoice_ids, amount, currency) combinations that add up."""
    data = reference_data()
    from decimal import Decimal

    by_payee: dict[str, list[dict[str, Any]]] = {}
    for inv in data["invoices"]:
        by_payee.setdefault(inv["payee_id"], []).append(inv)
    out = []
    for payee_id, invoices in sorted(by_payee.items()):
        for inv in invoices:
            out.append((payee_id, [inv["invoice_id"]], inv["amount"], inv["currency"]))
        if len(invoices) > 1:
            total = sum(Decimal(i["amount"]) for i in invoices)
            out.append((payee_id, [i["invoice_id"] for i in invoices], str(total),
                        invoices[0]["currency"]))
    return out


def generate_messages(count: int, *, prefix: str = "REQ-GEN") -> list[dict[str, Any]]:
    """``count`` valid partner notifications against the demo reference data."""
    payments = _payments()
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    methods = {"USD": ("FIRSTBANK", "ACH"), "EUR": ("EUROCLEARING", "SEPA"),
               "JPY": ("TOKYOBANK", "WIRE")}
    out = []
    for n in range(count):
        payee_id, invoice_ids, amount, currency = payments[n % len(payments)]
        partner, method = methods.get(currency, ("FIRSTBANK", "SWIFT"))
        out.append({"schema_version": "1", "request_id": f"{prefix}-{stamp}-{n:05d}",
                    "partner": partner, "status": "SETTLED", "payment_method": method,
                    "amount": amount, "currency": currency, "payee_id": payee_id,
                    "invoice_ids": invoice_ids, "value_date": time.strftime("%Y-%m-%d"),
                    "partner_reference": f"TRACE-{n:08d}",
                    "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return out


def demo_bodies(count: int) -> list[tuple[str, str]]:
    """(label, body) pairs: examples, generated ones, and the deliberate faults."""
    ex = examples_dir()
    out: list[tuple[str, str]] = []
    for name in ("settled-usd-ach.json", "settled-eur-sepa-extra-fields.json",
                 "settled-jpy-wire.json"):
        out.append((name, ex.joinpath(name).read_text()))
    base = generate_messages(3, prefix="REQ-DEMO")
    flaky = dict(base[0], request_id="REQ-DEMO-FLAKY-1")
    broken = dict(base[1], request_id="REQ-DEMO-BROKEN-1")
    unknown = dict(base[2], request_id="REQ-DEMO-UNKNOWN-PAYEE", payee_id="PAYEE-9999")
    out += [("transient once → retried", json.dumps(flaky)),
            ("transient always → FAILED", json.dumps(broken)),
            ("unknown payee → REJECTED", json.dumps(unknown))]
    for name in ("invalid-float-amount.json", "invalid-jpy-fraction.json",
                 "invalid-truncated.txt"):
        out.append((f"{name} → DLQ", ex.joinpath(name).read_text()))
    out += [(f"generated {m['request_id']}", json.dumps(m)) for m in generate_messages(count)]
    return out


async def send_messages(settings: Settings, bodies: list[str]) -> int:
    """Send bodies to the partner queue in batches of ten."""
    async with AwsClients(settings) as clients:
        url = (await clients.sqs.get_queue_url(
            QueueName=Names(settings.prefix).remittance_events))["QueueUrl"]
        for start in range(0, len(bodies), 10):
            chunk = bodies[start:start + 10]
            await clients.sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)])
    return len(bodies)


#: The bank file ``make run`` uploads (three jobs, one transaction not final yet).
DEMO_BANK_FILE = "pain.002.001.10-accepted-and-rejected.xml"


def demo_files() -> list[tuple[str, str, bytes]]:
    """(label, key, bytes) of the ISO 20022 example(s) the demo uploads."""
    data = examples_dir().joinpath("iso20022", DEMO_BANK_FILE).read_bytes()
    return [(f"bank file {DEMO_BANK_FILE} → 3 jobs", f"FIRSTBANK/demo/{DEMO_BANK_FILE}", data)]


async def upload_files(settings: Settings, files: list[tuple[str, bytes]]) -> list[ObjectRef]:
    """Put ``(key, bytes)`` objects into the partner-files bucket; returns what was put
    (bucket, key, ETag: the file version whose record ``--wait`` follows)."""
    bucket = file_drops(settings)[0].bucket_name(settings.prefix)
    out: list[ObjectRef] = []
    async with AwsClients(settings) as clients:
        for key, data in files:
            put = await clients.s3.put_object(Bucket=bucket, Key=key, Body=data)
            out.append(ObjectRef(bucket, key, put["ETag"].strip('"'), len(data)))
    return out


async def wait_for_files(settings: Settings, refs: list[ObjectRef], timeout_s: float,
                         poll_s: float = 1.0) -> list[Progress]:
    """Each file's record once it is finished (done or quarantined), or as it stands
    when ``timeout_s`` runs out."""
    async with AwsClients(settings) as clients:
        records = FileProgress.for_prefix(clients.dynamodb, settings.prefix)
        deadline = time.monotonic() + timeout_s
        while True:
            got = [await records.get(ref) for ref in refs]
            if all(p.finished for p in got) or time.monotonic() >= deadline:
                return got
            await asyncio.sleep(poll_s)
