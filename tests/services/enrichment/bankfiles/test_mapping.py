"""Per-transaction rules: rejections stay local, ids are deterministic, resume works."""

from __future__ import annotations

import io
import re

from hypothesis import given
from hypothesis import strategies as st

from services.enrichment.bankfiles import (
    Transaction,
    TransactionRejected,
    read_bank_file,
    request_id,
)
from tools.bench.bankfiles.gen import document, entry, with_entries

ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]+$")


def items(data: bytes, **kwargs: object) -> list[Transaction | TransactionRejected]:
    return list(read_bank_file(io.BytesIO(data), partner="FIRSTBANK", **kwargs))  # type: ignore[arg-type]


def test_bad_transactions_are_rejected_alone() -> None:
    data = with_entries(
        entry(0), entry(1, amount="0.00"), entry(2, currency="ZZZ"), entry(3, invoice=None),
        entry(4, amount="10.001"), entry(5))
    result = items(data)
    assert [type(item).__name__ for item in result] == [
        "Transaction", "TransactionRejected", "TransactionRejected", "TransactionRejected",
        "TransactionRejected", "Transaction"]
    rejected = {item.index: item.reason for item in result
                if isinstance(item, TransactionRejected)}
    assert rejected == {1: "invalid_amount", 2: "unknown_currency", 3: "missing_invoice_ref",
                        4: "invalid_amount"}
    assert [item.index for item in result] == list(range(6))


def test_resume_skips_the_first_transactions() -> None:
    data = document(10)
    full = items(data)
    resumed = items(data, start_index=7)
    assert resumed == full[7:]
    assert [item.index for item in resumed] == [7, 8, 9]
    assert items(data, start_index=10) == []


def test_same_file_same_ids() -> None:
    data = document(5)
    first = [i.notification["request_id"] for i in items(data) if isinstance(i, Transaction)]
    again = [i.notification["request_id"] for i in items(data) if isinstance(i, Transaction)]
    assert first == again == [f"ISO-FIRSTBANK-E2E-GEN-{n:07d}" for n in range(5)]


def test_payee_map_translates_and_is_authoritative() -> None:
    data = document(1)
    [mapped] = items(data, payee_map={"PAYEE-0001": "PAYEE-0009"})
    assert isinstance(mapped, Transaction) and mapped.notification["payee_id"] == "PAYEE-0009"
    [missing] = items(data, payee_map={})
    assert isinstance(missing, TransactionRejected) and missing.reason == "unknown_payee"


def test_payment_method_parameter_wins() -> None:
    [item] = items(document(1), payment_method="WIRE")
    assert isinstance(item, Transaction) and item.notification["payment_method"] == "WIRE"


def test_request_id_examples() -> None:
    assert request_id("FIRSTBANK", "E2E-1") == "ISO-FIRSTBANK-E2E-1"
    spaced = request_id("FIRSTBANK", "E2E 1/2")
    assert spaced.startswith("ISOH-FIRSTBANK-E2E-1-2-") and len(spaced) <= 128
    assert request_id("FIRSTBANK", "E2E-1-2") != spaced
    assert request_id("FIRSTBANK", "E2E 1/2") == spaced
    assert request_id("OTHER", "E2E-1") != request_id("FIRSTBANK", "E2E-1")
    long_ref = "A" * 200
    assert len(request_id("FIRSTBANK", long_ref)) == 128


@given(partner=st.from_regex(r"\A[A-Z0-9_]{2,32}\Z"), reference=st.text(max_size=300))
def test_request_id_always_fits_the_contract(partner: str, reference: str) -> None:
    rid = request_id(partner, reference)
    assert ID_PATTERN.match(rid) and 1 <= len(rid) <= 128
    assert request_id(partner, reference) == rid
