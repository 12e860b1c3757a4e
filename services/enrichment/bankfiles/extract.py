"""Read the fields of one streamed unit into :class:`Draft` objects.

pain.002: one ``TxInfAndSts`` gives one draft. camt.054: one ``Ntry`` gives one
draft per ``TxDtls`` (or one for an entry without details). Group- and
payment-level data arrive earlier in the file and are kept in :class:`Context`.
Paths and version differences are listed in docs/bankfiles.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from services.enrichment.bankfiles.formats import Paths, paths_for
from services.enrichment.bankfiles.mapping import REASON_TEXTS, Draft, Status
from services.enrichment.bankfiles.types import (
    MessageType,
    StatusReport,
    TransactionRejectReason,
)

#: pain.002 transaction statuses that are final. ACSP ("settlement in
#: process") is deliberately not here: the money has not moved yet.
PAIN_FINAL: dict[str, Status] = {"ACSC": "SETTLED", "ACCC": "SETTLED", "RJCT": "REJECTED"}
_NOT_PROVIDED = "NOTPROVIDED"

Element = etree._Element


@dataclass
class Context:
    """File-, group- and payment-level values seen before the current unit."""

    message_type: MessageType
    message_id: str | None = None
    created: str | None = None
    group_status: str | None = None
    group_reason: str | None = None
    payment_status: str | None = None
    payment_reason: str | None = None
    payment_info_id: str | None = None
    payment_reason_info: str | None = None
    group_reason_info: str | None = None
    original_message_id: str | None = None
    group_transactions: str | None = None
    payment_transactions: str | None = None
    payments_seen: int = 0
    units_in_payment: int = 0
    units_seen: int = 0
    _paths: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def version_paths(self) -> Paths:
        """The version's paths where they differ (:class:`formats.Paths`)."""
        return paths_for(self.message_type)

    def path(self, relative: str) -> str:
        """``A/B`` in this message's namespace, as an lxml path (cached)."""
        qualified = self._paths.get(relative)
        if qualified is None:
            ns = self.message_type.namespace
            qualified = "/".join(f"{{{ns}}}{step}" for step in relative.split("/"))
            self._paths[relative] = qualified
        return qualified

    def text(self, element: Element, relative: str) -> str | None:
        """Stripped text of the first match, None when absent or blank."""
        found = element.find(self.path(relative))
        if found is None or found.text is None:
            return None
        return found.text.strip() or None

    def texts(self, element: Element, relative: str) -> list[str]:
        """Stripped texts of every match, blanks dropped."""
        out = []
        for found in element.iterfind(self.path(relative)):
            if found.text and found.text.strip():
                out.append(found.text.strip())
        return out

    def first(self, element: Element, *relatives: str) -> str | None:
        """Text of the first path that has one (``NOTPROVIDED`` counts as none)."""
        for relative in relatives:
            value = self.text(element, relative)
            if value and value != _NOT_PROVIDED:
                return value
        return None

    def observe(self, element: Element) -> None:
        """Remember header/group/payment values from a finished non-unit element."""
        name = etree.QName(element).localname
        parent = element.getparent()
        where = etree.QName(parent).localname if parent is not None else ""
        if name == "GrpHdr":
            self.message_id = self.text(element, "MsgId")
            self.created = self.text(element, "CreDtTm")
        elif name == "OrgnlGrpInfAndSts":
            self.group_status = self.text(element, "GrpSts")
            self.group_reason = self.text(element, "StsRsnInf/Rsn/Cd")
            self.group_reason_info = self.text(element, "StsRsnInf/AddtlInf")
            self.original_message_id = self.text(element, "OrgnlMsgId")
            self.group_transactions = self.text(element, "OrgnlNbOfTxs")
        elif where == "OrgnlPmtInfAndSts":
            value = element.text.strip() if element.text and element.text.strip() else None
            if name == "OrgnlPmtInfId":
                self.payment_info_id = value
            elif name == "PmtInfSts":
                self.payment_status = value
            elif name == "OrgnlNbOfTxs":
                self.payment_transactions = value
            elif name == "StsRsnInf" and self.payment_reason is None:
                self.payment_reason = self.text(element, "Rsn/Cd")
                self.payment_reason_info = self.text(element, "AddtlInf")
        elif name == "OrgnlPmtInfAndSts":
            self.payments_seen += 1
            self.payment_status = self.payment_reason = self.payment_info_id = None
            self.payment_reason_info = self.payment_transactions = None
            self.units_in_payment = 0

    def unit_seen(self) -> None:
        self.units_in_payment += 1
        self.units_seen += 1


def payment_report(ctx: Context, index: int) -> StatusReport | None:
    """A status for a payment batch (``OrgnlPmtInfAndSts``) that lists no
    transaction: the batch's own ``PmtInfSts``, else the group's. Call it when the
    batch ends, before :meth:`Context.observe` forgets it."""
    if ctx.units_in_payment:
        return None
    own = ctx.payment_status
    status = own or ctx.group_status
    if status is None:
        return None
    reason = ctx.payment_reason if own else ctx.group_reason
    info = ctx.payment_reason_info if own else ctx.group_reason_info
    return StatusReport(index, "payment", status, reason,
                        REASON_TEXTS.get(reason or "") or info, ctx.payment_info_id,
                        _count(ctx.payment_transactions))


def group_report(ctx: Context, index: int) -> StatusReport | None:
    """The group's status when the file lists neither batches nor transactions."""
    if ctx.payments_seen or ctx.units_seen or ctx.group_status is None:
        return None
    return StatusReport(index, "group", ctx.group_status, ctx.group_reason,
                        REASON_TEXTS.get(ctx.group_reason or "") or ctx.group_reason_info,
                        ctx.original_message_id, _count(ctx.group_transactions))


def _count(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _creditor(ctx: Context, base: Element) -> tuple[str | None, str | None]:
    """(id, name) of the creditor at the version's path (``Cdtr`` or ``Cdtr/Pty``)."""
    party = base.find(ctx.path(ctx.version_paths.creditor))
    if party is None:
        return None, None
    return ctx.text(party, "Id/OrgId/Othr/Id"), ctx.text(party, "Nm")


def pain002(unit: Element, ctx: Context) -> list[Draft]:
    """One draft for a ``TxInfAndSts``; status inherits payment then group status."""
    own = ctx.text(unit, "TxSts")
    code = own or ctx.payment_status or ctx.group_status or ""
    reason = ctx.text(unit, "StsRsnInf/Rsn/Cd")
    if own is None:
        reason = reason or ctx.payment_reason or ctx.group_reason
    creditor_id, creditor_name = _creditor(ctx, unit)
    amount = unit.find(ctx.path("OrgnlTxRef/Amt/InstdAmt"))
    extras: dict[str, str] = {}
    for key, value in (("end_to_end_id", ctx.text(unit, "OrgnlEndToEndId")),
                       ("message_id", ctx.message_id),
                       ("original_payment_info_id", ctx.payment_info_id)):
        if value and value != _NOT_PROVIDED:
            extras[key] = value
    return [Draft(
        message_type=ctx.message_type.name,
        end_to_end=extras.get("end_to_end_id"),
        status=PAIN_FINAL.get(code),
        bank_status=code or "none",
        reference=ctx.first(unit, "OrgnlEndToEndId", "AcctSvcrRef", "OrgnlTxId",
                            "OrgnlInstrId", "StsId"),
        amount=amount.text if amount is not None else None,
        currency=amount.get("Ccy") if amount is not None else None,
        creditor_id=creditor_id,
        creditor_name=creditor_name,
        invoice_refs=ctx.texts(unit, "OrgnlTxRef/RmtInf/Strd/RfrdDocInf/Nb")
        + ctx.texts(unit, "OrgnlTxRef/RmtInf/Strd/CdtrRefInf/Ref"),
        unstructured=ctx.texts(unit, "OrgnlTxRef/RmtInf/Ustrd"),
        occurred_at=ctx.text(unit, "AccptncDtTm") or ctx.created,
        value_date=ctx.first(unit, *ctx.version_paths.requested_date),
        service_level=ctx.text(unit, "OrgnlTxRef/PmtTpInf/SvcLvl/Cd"),
        reason_code=reason,
        reason_info=ctx.text(unit, "StsRsnInf/AddtlInf"),
        extras=extras,
    )]


def _entry_status(
        unit: Element, ctx: Context) -> tuple[Status | None, str, TransactionRejectReason | None]:
    """(status, raw status, skip reason): booked debit → SETTLED, booked reversal →
    RETURNED, unbooked → not final, booked credit (money in) → unexpected."""
    code = ctx.first(unit, *ctx.version_paths.entry_status) or "none"
    reversal = (ctx.text(unit, "RvslInd") or "").lower() in ("true", "1")
    direction = ctx.text(unit, "CdtDbtInd")
    raw = f"{code}/{direction}" + ("/reversal" if reversal else "")
    if code != "BOOK":
        return None, raw, "not_final"
    if reversal:
        return "RETURNED", raw, None
    if direction == "DBIT":
        return "SETTLED", raw, None
    return None, raw, "unexpected_credit"


def camt054(unit: Element, ctx: Context) -> list[Draft]:
    """One draft per ``TxDtls`` of an entry (one for an entry without details)."""
    status, bank_status, skip = _entry_status(unit, ctx)
    details = list(unit.iterfind(ctx.path("NtryDtls/TxDtls")))
    entry_amount = unit.find(ctx.path("Amt"))
    occurred = ctx.first(unit, "BookgDt/DtTm") or ctx.created
    value_date = ctx.first(unit, "ValDt/Dt", "ValDt/DtTm")
    drafts = []
    for tx in details or [unit]:
        amount = None
        if tx is not unit:
            for path in ctx.version_paths.tx_amount:
                amount = tx.find(ctx.path(path))
                if amount is not None:
                    break
        if amount is None and len(details) <= 1:
            amount = entry_amount
        creditor_id, creditor_name = _creditor(ctx, tx)
        reason = ctx.first(tx, "RtrInf/Rsn/Cd", "RtrInf/Rsn/Prtry")
        extras = {"message_id": ctx.message_id} if ctx.message_id else {}
        e2e = ctx.first(tx, "Refs/EndToEndId")
        if e2e:
            extras["end_to_end_id"] = e2e
        entry_ref = ctx.first(unit, "AcctSvcrRef", "NtryRef")
        if entry_ref:
            extras["entry_reference"] = entry_ref
        drafts.append(Draft(
            message_type=ctx.message_type.name,
            end_to_end=e2e,
            status=status,
            skip_reason=skip,
            bank_status=bank_status,
            reference=ctx.first(tx, "Refs/EndToEndId", "Refs/AcctSvcrRef", "Refs/TxId")
            or entry_ref,
            amount=amount.text if amount is not None else None,
            currency=amount.get("Ccy") if amount is not None else None,
            creditor_id=creditor_id,
            creditor_name=creditor_name,
            invoice_refs=ctx.texts(tx, "RmtInf/Strd/RfrdDocInf/Nb")
            + ctx.texts(tx, "RmtInf/Strd/CdtrRefInf/Ref"),
            unstructured=ctx.texts(tx, "RmtInf/Ustrd"),
            occurred_at=occurred,
            value_date=value_date,
            reason_code=reason if status == "RETURNED" else None,
            reason_info=ctx.text(tx, "RtrInf/AddtlInf"),
            extras=extras,
        ))
    return drafts
