"""Generated camt.054.001.08 files of any size, for tests and the memory bench.

Each entry is a booked debit of 1000.00 USD to PAYEE-0001 for INV-1001, so
every transaction maps; ``bad`` indexes get a zero amount instead.
"""

from __future__ import annotations

from collections.abc import Iterator

NS = "urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"

_HEAD = f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="{NS}"><BkToCstmrDbtCdtNtfctn>
<GrpHdr><MsgId>GEN-1</MsgId><CreDtTm>2026-11-26T08:00:00Z</CreDtTm></GrpHdr>
<Ntfctn><Id>N-1</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>
"""
_TAIL = "</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>\n"


def entry(index: int, amount: str = "1000.00", currency: str = "USD",
          invoice: str | None = "INV-1001") -> str:
    """One ``Ntry`` with one ``TxDtls``."""
    remittance = f"<RmtInf><Ustrd>{invoice}</Ustrd></RmtInf>" if invoice else ""
    return (
        f"<Ntry><NtryRef>{index}</NtryRef><Amt Ccy=\"{currency}\">{amount}</Amt>"
        "<CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
        "<BookgDt><DtTm>2026-11-25T15:00:00Z</DtTm></BookgDt>"
        "<ValDt><Dt>2026-11-25</Dt></ValDt><BkTxCd/><NtryDtls><TxDtls>"
        f"<Refs><EndToEndId>E2E-GEN-{index:07d}</EndToEndId></Refs>"
        "<RltdPties><Cdtr><Pty><Id><OrgId><Othr><Id>PAYEE-0001</Id></Othr></OrgId></Id>"
        f"</Pty></Cdtr></RltdPties>{remittance}</TxDtls></NtryDtls></Ntry>\n")


def chunks(count: int, bad: frozenset[int] = frozenset()) -> Iterator[bytes]:
    """The file in pieces, so a 100,000-entry file is never one string."""
    yield _HEAD.encode()
    for index in range(count):
        yield entry(index, amount="0.00" if index in bad else "1000.00").encode()
    yield _TAIL.encode()


def document(count: int, bad: frozenset[int] = frozenset()) -> bytes:
    """The whole file as bytes (for small counts)."""
    return b"".join(chunks(count, bad))


def with_entries(*entries: str) -> bytes:
    """A file with the given ``Ntry`` texts."""
    return (_HEAD + "".join(entries) + _TAIL).encode()
