"""ISO 20022 bank files (pain.002, camt.054) to partner notifications.

Public API; the guarantees are in each docstring and in docs/bankfiles.md.
"""

from __future__ import annotations

from services.enrichment.bankfiles.mapping import request_id
from services.enrichment.bankfiles.reader import detect, read_bank_file
from services.enrichment.bankfiles.types import (
    FileRejected,
    MessageType,
    StatusReport,
    Transaction,
    TransactionRejected,
)

__all__ = [
    "FileRejected",
    "MessageType",
    "StatusReport",
    "Transaction",
    "TransactionRejected",
    "detect",
    "read_bank_file",
    "request_id",
]
