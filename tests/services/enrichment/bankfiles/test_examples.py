"""Each shipped example file produces exactly the expected items."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
from lxml import etree

from services.enrichment.bankfiles import (
    StatusReport,
    Transaction,
    TransactionRejected,
    detect,
    read_bank_file,
)

EXAMPLES = resources.files("shared.contracts").joinpath("examples", "iso20022")
KEY = "partner-files/FIRSTBANK/2026-11-24/status.xml"


def read(name: str, **kwargs: Any) -> list[Transaction | TransactionRejected | StatusReport]:
    with EXAMPLES.joinpath(name).open("rb") as stream:
        return list(read_bank_file(stream, partner="FIRSTBANK", source_key=KEY, **kwargs))


def note(**fields: Any) -> dict[str, Any]:
    """Expected notification: the fields every example shares, plus ``fields``."""
    return {"partner": "FIRSTBANK", "source_file": KEY, **fields}


PAIN_10 = [
    Transaction(0, note(
        request_id="ISO-FIRSTBANK-E2E-FB-0001", status="SETTLED", payment_method="SWIFT",
        amount="1250.00", currency="USD", payee_id="PAYEE-0001",
        invoice_ids=["INV-1001", "INV-1002"], occurred_at="2026-11-24T17:59:30+01:00",
        partner_reference="E2E-FB-0001", iso_message_type="pain.002.001.10",
        bank_status="ACSC", value_date="2026-11-24", end_to_end_id="E2E-FB-0001",
        message_id="FB-STS-20261124-0001", original_payment_info_id="PMTINF-0001")),
    Transaction(1, note(
        request_id="ISO-FIRSTBANK-E2E-FB-0002", status="SETTLED", payment_method="SWIFT",
        amount="150000", currency="JPY", payee_id="PAYEE-0003", invoice_ids=["INV-3001"],
        occurred_at="2026-11-24T18:05:00+01:00", partner_reference="E2E-FB-0002",
        iso_message_type="pain.002.001.10", bank_status="ACCC", value_date="2026-11-25",
        end_to_end_id="E2E-FB-0002", message_id="FB-STS-20261124-0001",
        original_payment_info_id="PMTINF-0001")),
    Transaction(2, note(
        request_id="ISO-FIRSTBANK-E2E-FB-0003", status="REJECTED", payment_method="SEPA",
        amount="1234.56", currency="EUR", payee_id="PAYEE-0002", invoice_ids=["INV-2001"],
        occurred_at="2026-11-24T18:05:00+01:00", partner_reference="E2E-FB-0003",
        iso_message_type="pain.002.001.10", bank_status="RJCT", value_date="2026-11-24",
        reason_code="AC04", reason_text="Closed account number",
        end_to_end_id="E2E-FB-0003", message_id="FB-STS-20261124-0001",
        original_payment_info_id="PMTINF-0001")),
    TransactionRejected(3, "not_final", "bank status 'ACSP' is not final"),
]

PAIN_03 = [
    Transaction(0, note(
        request_id="ISO-FIRSTBANK-E2E-EC-0001", status="REJECTED", payment_method="SEPA",
        amount="1234.56", currency="EUR", payee_id="PAYEE-0002", invoice_ids=["INV-2001"],
        occurred_at="2026-11-24T10:15:00+01:00", partner_reference="E2E-EC-0001",
        iso_message_type="pain.002.001.03", bank_status="RJCT", value_date="2026-11-24",
        reason_code="AC04", reason_text="Closed account number", end_to_end_id="E2E-EC-0001",
        message_id="EC-STS-20261124-0007", original_payment_info_id="PMTINF-SEPA-01")),
    Transaction(1, note(
        request_id="ISO-FIRSTBANK-E2E-EC-0002", status="REJECTED", payment_method="SEPA",
        amount="1234.56", currency="EUR", payee_id="PAYEE-0002", invoice_ids=["INV-2001"],
        occurred_at="2026-11-24T10:15:00+01:00", partner_reference="E2E-EC-0002",
        iso_message_type="pain.002.001.03", bank_status="RJCT", value_date="2026-11-25",
        reason_code="MS03", reason_text="Not specified reason agent generated",
        end_to_end_id="E2E-EC-0002", message_id="EC-STS-20261124-0007",
        original_payment_info_id="PMTINF-SEPA-01")),
]

CAMT_02 = [
    Transaction(0, note(
        request_id="ISO-FIRSTBANK-E2E-FB-0101", status="SETTLED", payment_method="SWIFT",
        amount="1250.00", currency="USD", payee_id="PAYEE-0001",
        invoice_ids=["INV-1001", "INV-1002"], occurred_at="2026-11-24T16:00:00+01:00",
        partner_reference="E2E-FB-0101", iso_message_type="camt.054.001.02",
        bank_status="BOOK/DBIT", value_date="2026-11-24", message_id="FB-NTF-20261125-0001",
        end_to_end_id="E2E-FB-0101", entry_reference="FB-BOOK-0001")),
    Transaction(1, note(
        request_id="ISO-FIRSTBANK-FB-TX-0102", status="SETTLED", payment_method="SEPA",
        amount="1234.56", currency="EUR", payee_id="PAYEE-0002", invoice_ids=["INV-2001"],
        occurred_at="2026-11-25T07:30:00+01:00", partner_reference="FB-TX-0102",
        iso_message_type="camt.054.001.02", bank_status="BOOK/DBIT", value_date="2026-11-24",
        message_id="FB-NTF-20261125-0001", entry_reference="FB-BOOK-0002")),
    Transaction(2, note(
        request_id="ISO-FIRSTBANK-E2E-FB-0103", status="RETURNED", payment_method="SWIFT",
        amount="150000", currency="JPY", payee_id="PAYEE-0003", invoice_ids=["INV-3001"],
        occurred_at="2026-11-25T06:10:00+09:00", partner_reference="E2E-FB-0103",
        iso_message_type="camt.054.001.02", bank_status="BOOK/CRDT/reversal",
        value_date="2026-11-25", reason_code="AC04", reason_text="Closed account number",
        message_id="FB-NTF-20261125-0001", end_to_end_id="E2E-FB-0103",
        entry_reference="FB-BOOK-0003")),
    TransactionRejected(3, "not_final", "bank status 'PDNG/DBIT' is not final"),
]

CAMT_08 = [
    Transaction(0, note(
        request_id="ISO-FIRSTBANK-E2E-EC-0201", status="SETTLED", payment_method="SWIFT",
        amount="1000.00", currency="USD", payee_id="PAYEE-0001", invoice_ids=["INV-1001"],
        occurred_at="2026-11-25T15:00:00+00:00", partner_reference="E2E-EC-0201",
        iso_message_type="camt.054.001.08", bank_status="BOOK/DBIT", value_date="2026-11-25",
        message_id="EC-NTF-20261126-0001", end_to_end_id="E2E-EC-0201",
        entry_reference="EC-BOOK-B1")),
    Transaction(1, note(
        request_id="ISO-FIRSTBANK-E2E-EC-0202", status="SETTLED", payment_method="SWIFT",
        amount="250.00", currency="USD", payee_id="PAYEE-0001", invoice_ids=["INV-1002"],
        occurred_at="2026-11-25T15:00:00+00:00", partner_reference="E2E-EC-0202",
        iso_message_type="camt.054.001.08", bank_status="BOOK/DBIT", value_date="2026-11-25",
        message_id="EC-NTF-20261126-0001", end_to_end_id="E2E-EC-0202",
        entry_reference="EC-BOOK-B1")),
    Transaction(2, note(
        request_id="ISO-FIRSTBANK-E2E-EC-0203", status="SETTLED", payment_method="SEPA",
        amount="1234.56", currency="EUR", payee_id="PAYEE-0002", invoice_ids=["INV-2001"],
        occurred_at="2026-11-26T08:00:00+00:00", partner_reference="E2E-EC-0203",
        iso_message_type="camt.054.001.08", bank_status="BOOK/DBIT", value_date="2026-11-26",
        message_id="EC-NTF-20261126-0001", end_to_end_id="E2E-EC-0203",
        entry_reference="EC-BOOK-S2")),
    TransactionRejected(3, "unexpected_credit",
                        "booked credit 'BOOK/CRDT' is money received, not a payout"),
]


@pytest.mark.parametrize(("name", "expected"), [
    ("pain.002.001.10-accepted-and-rejected.xml", PAIN_10),
    ("pain.002.001.03-sepa-rejected.xml", PAIN_03),
    ("camt.054.001.02-entries.xml", CAMT_02),
    ("camt.054.001.08-batch.xml", CAMT_08),
])
def test_example_yields_exactly(name: str, expected: list[object]) -> None:
    assert read(name) == expected


@pytest.mark.parametrize(("name", "message_type"), [
    ("pain.002.001.10-accepted-and-rejected.xml", "pain.002.001.10"),
    ("pain.002.001.03-sepa-rejected.xml", "pain.002.001.03"),
    ("camt.054.001.02-entries.xml", "camt.054.001.02"),
    ("camt.054.001.08-batch.xml", "camt.054.001.08"),
    ("pain.002.001.03-accepted-and-rejected.xml", "pain.002.001.03"),
])
def test_detect_by_root_namespace(name: str, message_type: str) -> None:
    with EXAMPLES.joinpath(name).open("rb") as stream:
        assert detect(stream).name == message_type


def test_examples_match_the_demo_invoices() -> None:
    """Settled amounts equal the invoices' sum, so enrichment would accept them."""
    data = json.loads(resources.files("shared.contracts").joinpath(
        "examples", "reference-data.json").read_text())
    invoices = {i["invoice_id"]: i for i in data["invoices"]}
    for expected in (PAIN_10, PAIN_03, CAMT_02, CAMT_08):
        for item in expected:
            if isinstance(item, Transaction):
                body = item.notification
                owned = [invoices[i] for i in body["invoice_ids"]]
                assert {i["payee_id"] for i in owned} == {body["payee_id"]}
                assert {i["currency"] for i in owned} == {body["currency"]}
                assert sum(Decimal(i["amount"]) for i in owned) == Decimal(body["amount"])


def test_base_pain_002_001_03_accepted_and_rejected_in_several_currencies() -> None:
    """ISO's base pain.002.001.03 (not the DK SEPA profile): ACSC in USD and JPY are
    jobs, RJCT in EUR and GBP are jobs reporting the rejection with its reason."""
    result = read("pain.002.001.03-accepted-and-rejected.xml")
    assert all(isinstance(item, Transaction) for item in result)
    bodies = [item.notification for item in result if isinstance(item, Transaction)]
    assert [(b["status"], b["currency"], b["amount"], b.get("reason_code")) for b in bodies] == [
        ("SETTLED", "USD", "1250.00", None), ("SETTLED", "JPY", "150000", None),
        ("REJECTED", "EUR", "1234.56", "AC04"), ("REJECTED", "GBP", "99.90", "AM04")]
    assert {b["iso_message_type"] for b in bodies} == {"pain.002.001.03"}


def test_batch_rejected_without_transactions_is_a_status_report() -> None:
    result = read("pain.002.001.10-batch-rejected.xml")
    assert result[0] == StatusReport(0, "payment", "RJCT", "AM04", "Insufficient funds",
                                     "PMTINF-1001", 40)
    assert isinstance(result[1], Transaction)
    assert result[1].notification["request_id"] == "ISO-FIRSTBANK-E2E-FB-1002-01"
    assert len(result) == 2


def test_the_dk_sepa_example_is_valid_against_both_dk_and_iso_base() -> None:
    """DK files share ISO's namespace; they are read as base pain.002.001.03, of which
    the DK profile is a restriction."""
    xsd = resources.files("services.enrichment.bankfiles").joinpath("xsd")
    data = EXAMPLES.joinpath("pain.002.001.03-sepa-rejected.xml").read_bytes()
    for name in ("pain.002.001.03.dk.xsd", "pain.002.001.03.xsd"):
        schema = etree.XMLSchema(etree.fromstring(xsd.joinpath(name).read_bytes()))
        assert schema.validate(etree.fromstring(data)), name


def test_end_to_end_id_is_the_invoice_only_when_the_partner_switches_it_on() -> None:
    data = EXAMPLES.joinpath("pain.002.001.10-accepted-and-rejected.xml").read_bytes()
    data = data.replace(b"<RmtInf><Ustrd>INV-1002</Ustrd></RmtInf>", b"").replace(
        b"<TxSts>ACSP</TxSts>", b"<TxSts>ACSC</TxSts>")
    off = list(read_bank_file(io.BytesIO(data), partner="FIRSTBANK"))[3]
    assert isinstance(off, TransactionRejected) and off.reason == "missing_invoice_ref"
    assert "end-to-end fallback is off" in off.detail
    on = list(read_bank_file(io.BytesIO(data), partner="FIRSTBANK",
                             invoice_from_end_to_end=True))
    assert isinstance(on[3], Transaction)
    assert on[3].notification["invoice_ids"] == ["E2E-FB-0004"]
    # structured and free-text references still come first
    assert isinstance(on[0], Transaction)
    assert on[0].notification["invoice_ids"] == ["INV-1001", "INV-1002"]
