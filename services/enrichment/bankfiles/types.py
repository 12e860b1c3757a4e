"""Result and error types of the bank-file reader (see docs/bankfiles.md).

Kept free of parsing code so that callers (the S3/SQS wiring) can import them
without pulling in lxml or xmlschema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

FileRejectReason = Literal[
    "not_xml", "unsafe_xml", "unknown_message_type", "schema_invalid", "too_large"]

#: Why one transaction produced no notification. ``not_final`` is not an error:
#: the bank reported a status that is neither settled nor rejected yet.
TransactionRejectReason = Literal[
    "not_final", "unexpected_credit", "missing_reference", "missing_amount", "invalid_amount",
    "unknown_currency", "missing_payee", "unknown_payee", "missing_invoice_ref",
    "invalid_date", "invalid_notification"]


class FileRejected(Exception):
    """The whole file is refused; nothing from it may be used.

    Raised before the first item is yielded: the reader validates the complete
    file (well-formedness, safety rules, XSD) before it maps any transaction.

    Attributes:
        reason: machine-readable cause, one of :data:`FileRejectReason`.
        detail: human-readable explanation (never contains file content beyond
            element paths, line numbers and schema messages).
    """

    def __init__(self, reason: FileRejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: FileRejectReason = reason
        self.detail = detail


@dataclass(frozen=True)
class MessageType:
    """A supported ISO 20022 message version, identified by its root namespace."""

    name: str  # e.g. "pain.002.001.10", "pain.002.001.03.ch.02"
    namespace: str
    xsd: str  # file name inside the package's xsd/ directory
    version: int = 0  # the ISO version it is (or derives from): 10 for pain.002.001.10
    variant: str | None = None  # national variant, None for ISO's own schema
    schema: str = ""  # which schema validates it, as the file's record states it

    @property
    def family(self) -> str:
        """``pain.002`` or ``camt.054``."""
        return self.name[:8]


@dataclass(frozen=True)
class Transaction:
    """One transaction mapped to a partner notification.

    Attributes:
        index: 0-based position of the transaction in the file (the resume
            checkpoint: pass ``start_index=index + 1`` to continue after it).
        notification: JSON-ready dict that ``PartnerNotification.model_validate``
            accepts (already checked).
    """

    index: int
    notification: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class TransactionRejected:
    """One transaction that yields no notification; the rest of the file goes on.

    Attributes:
        index: 0-based position of the transaction in the file.
        reason: machine-readable cause, one of :data:`TransactionRejectReason`.
        detail: human-readable explanation.
    """

    index: int
    reason: TransactionRejectReason
    detail: str


@dataclass(frozen=True)
class StatusReport:
    """A status the bank gave a whole group or payment batch without listing its
    transactions (``GrpSts``/``PmtInfSts`` and no ``TxInfAndSts``). No job can be
    made of it; the operator must hear of it (docs/bankfiles.md, "Statuses at
    every level").

    Attributes:
        index: position among the file's items (the same sequence as transactions).
        level: ``group`` (``OrgnlGrpInfAndSts``) or ``payment`` (``OrgnlPmtInfAndSts``).
        status: the bank's code (``RJCT``, ``ACTC``, ``PART``…).
        reason_code: ``StsRsnInf/Rsn/Cd`` when given.
        reason_text: the code's ISO name, else ``StsRsnInf/AddtlInf``.
        reference: ``OrgnlPmtInfId`` (payment) or ``OrgnlMsgId`` (group).
        transactions: ``OrgnlNbOfTxs`` when given: how many payments it covers.
    """

    index: int
    level: Literal["group", "payment"]
    status: str
    reason_code: str | None = None
    reason_text: str | None = None
    reference: str | None = None
    transactions: int | None = None

    @property
    def rejected(self) -> bool:
        return self.status == "RJCT"
