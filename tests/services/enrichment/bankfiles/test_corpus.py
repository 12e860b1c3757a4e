"""Published bank files (corpus/SOURCES.md) decide: each one's outcome, as a table.

A row is what an operator would see for the file: quarantined with a reason a
bank recognises, or read into N jobs, rejected transactions by reason, and
group/batch status reports. Every sample of a supported family that is valid
is read; the quarantined ones are truly invalid (no ISO namespace, a 10-letter
BIC, an empty amount).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from services.enrichment.bankfiles import (
    FileRejected,
    StatusReport,
    Transaction,
    TransactionRejected,
    detect,
    read_bank_file,
)

CORPUS = Path(__file__).resolve().parent / "corpus"


@dataclass(frozen=True)
class Read:
    jobs: int
    rejected: dict[str, int] = field(default_factory=dict)
    reports: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Quarantined:
    reason: str
    detail: str  # a regular expression the detail must match


ROWS: list[tuple[str, str | None, Read | Quarantined, dict[str, Any]]] = [
    # PostFinance (CH): ESR/QR credits are money in; a booked debit with details is a payout.
    ("postfinance-camt.054.001.08-esr-credits.xml", "camt.054.001.08",
     Read(0, {"unexpected_credit": 2}), {}),
    ("postfinance-camt.054.001.08-qrr-credit.xml", "camt.054.001.08",
     Read(0, {"unexpected_credit": 1}), {}),
    ("postfinance-camt.054.001.04-esr-asr-debit.xml", "camt.054.001.04", Read(1), {}),
    ("postfinance-camt.054.001.04-es-batch.xml", "camt.054.001.04",
     Read(0, {"unexpected_credit": 8}), {}),
    ("postfinance-camt.054.001.04-mixed-status.xml", "camt.054.001.04",
     Read(0, {"missing_reference": 2, "not_final": 1}), {}),
    ("postfinance-camt.054.001.04-collective-booking.xml", "camt.054.001.04",
     Read(0, {"unexpected_credit": 2}), {}),
    ("postfinance-camt.054.001.04-debit.xml", "camt.054.001.04",
     Read(0, {"missing_payee": 1}), {}),
    ("postfinance-camt.054.001.04-esr-batch.xml", "camt.054.001.04",
     Read(0, {"unexpected_credit": 6}), {}),
    ("postfinance-invalid-no-namespace.xml", None,
     Quarantined("unknown_message_type", r"not a Document of a supported message"), {}),
    # FFFS (FI): credits, debits in EUR, an INFO entry (not final), one free text
    # without an invoice-like token.
    ("fffs-finland-camt.054.001.02-credit-advice.xml", "camt.054.001.02",
     Read(4, {"unexpected_credit": 6, "missing_invoice_ref": 1, "not_final": 2}), {}),
    # genkgo (SEK/CHF): .02 batch lists three transactions without their own amounts.
    ("genkgo-camt.054.001.02-sek-batch.xml", "camt.054.001.02",
     Read(0, {"missing_amount": 3}), {}),
    ("genkgo-camt.054.001.04-sek-chf.xml", "camt.054.001.04", Read(3), {}),
    ("genkgo-camt.054.001.08-sek-chf.xml", "camt.054.001.08", Read(3), {}),
    ("genkgo-camt.054.001.08-fi-creditor.xml", "camt.054.001.08",
     Read(0, {"missing_payee": 1}), {}),
    # viafintech (DE SEPA, CH): no invoice in RmtInf unless the partner takes the
    # end-to-end id; the Swiss .ch.02 report is a group status without transactions.
    ("viafintech-pain.002.001.03-sepa-rejected.xml", "pain.002.001.03",
     Read(0, {"missing_invoice_ref": 1}), {}),
    ("viafintech-pain.002.001.03-sepa-rejected.xml", "pain.002.001.03",
     Read(1), {"invoice_from_end_to_end": True}),
    ("viafintech-pain.002.001.03.ch.02-group-accepted.xml", "pain.002.001.03.ch.02",
     Read(0, reports=(("group", "ACTC"),)), {}),
    ("viafintech-pain.002.001.10-rejected.xml", "pain.002.001.10",
     Read(0, {"missing_invoice_ref": 1}), {}),
    ("viafintech-pain.002.001.10-rejected.xml", "pain.002.001.10",
     Read(1), {"invoice_from_end_to_end": True}),
    ("viafintech-camt.054.001.04-chf.xml", "camt.054.001.04",
     Read(0, {"unexpected_credit": 3, "missing_payee": 2}), {}),
    ("viafintech-camt.054.001.02-empty-amount.xml", "camt.054.001.02",
     Quarantined("schema_invalid", r"^Ntry #1 \(line 42\): .*TxAmt/Amt: invalid value ''"), {}),
    # hbci4java (DE DK/EBICS)
    ("hbci4java-pain.002.001.10-group-received.xml", "pain.002.001.10",
     Read(0, reports=(("payment", "RCVC"),)), {}),
    ("hbci4java-pain.002.001.10-bad-bic.xml", "pain.002.001.10",
     Quarantined("schema_invalid", r"BICFI: value doesn't match any pattern"), {}),
    ("hbci4java-pain.002-no-namespace.xml", None,
     Quarantined("unknown_message_type", r"not a Document of a supported message"), {}),
]


def outcome(name: str, **options: Any) -> Read | Quarantined:
    try:
        with (CORPUS / name).open("rb") as stream:
            items = list(read_bank_file(stream, partner="BANK", **options))
    except FileRejected as exc:
        return Quarantined(exc.reason, exc.detail)
    assert [item.index for item in items] == list(range(len(items)))
    return Read(
        jobs=sum(isinstance(item, Transaction) for item in items),
        rejected=dict(Counter(item.reason for item in items
                              if isinstance(item, TransactionRejected))),
        reports=tuple((item.level, item.status) for item in items
                      if isinstance(item, StatusReport)))


@pytest.mark.parametrize(("name", "message_type", "expected", "options"), ROWS,
                         ids=[f"{r[0]}{'+e2e' if r[3] else ''}" for r in ROWS])
def test_published_file_outcome(name: str, message_type: str | None,
                                expected: Read | Quarantined, options: dict[str, Any]) -> None:
    got = outcome(name, **options)
    if isinstance(expected, Quarantined):
        assert isinstance(got, Quarantined), got
        assert got.reason == expected.reason
        assert re.search(expected.detail, got.detail), got.detail
    else:
        assert got == expected
    if message_type is not None:
        with (CORPUS / name).open("rb") as stream:
            assert detect(stream).name == message_type


def test_corpus_is_what_sources_records() -> None:
    """Every file is listed in SOURCES.md with its sha256, and every listed file is tested:
    at least 15 files from at least 5 sources."""
    sources = (CORPUS / "SOURCES.md").read_text()
    listed = dict(re.findall(r"^\| (\S+\.xml) \|.*\| ([0-9a-f]{64}) \|$", sources, re.M))
    files = {p.name for p in CORPUS.glob("*.xml")}
    assert set(listed) == files == {row[0] for row in ROWS}
    for name, digest in listed.items():
        assert hashlib.sha256((CORPUS / name).read_bytes()).hexdigest() == digest, name
    repos = set(re.findall(r"\| github\.com/(\S+) \|", sources))
    assert len(files) >= 15 and len(repos) >= 5
