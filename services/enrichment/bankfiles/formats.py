"""Supported ISO 20022 messages: namespaces, shipped XSDs, where transactions are,
and the few element paths that differ between versions.

Detection is by the root element's namespace only (docs/bankfiles.md, "Versions
and variants"). Every ISO version of pain.002 from .03 to .14 and of camt.054
from .02 to .12 is read through one mapping; :class:`Paths` is the small table of
what moved between versions. A national variant with its own namespace is read
like the ISO version it derives from and validated against its own XSD when one
is shipped, else against that base XSD retargeted to the variant's namespace;
``MessageType.schema`` says which, and the file's record repeats it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

import xmlschema
from lxml import etree

from services.enrichment.bankfiles.types import MessageType

ISO_NS = "urn:iso:std:iso:20022:tech:xsd:"
PAIN_VERSIONS = range(3, 15)  # pain.002.001.03 … .14 (newest published, 2024)
CAMT_VERSIONS = range(2, 13)  # camt.054.001.02 … .12 (newest found published)


@dataclass(frozen=True)
class Paths:
    """Element paths (relative to the unit) that are not the same in every version.

    pain.002: the creditor became a ``Party40Choice`` (``Cdtr/Pty``) in .09 and the
    requested execution date a ``DateAndDateTime2Choice`` (``/Dt``, ``/DtTm``) in .08.
    camt.054: the transaction amount moved into ``TxDtls/Amt`` in .03; the entry
    status became a choice (``Sts/Cd``) and the related creditor a ``Party40Choice``
    in .07. Checked against each shipped XSD by ``tests/services/enrichment/
    bankfiles/test_versions.py``.
    """

    creditor: str
    requested_date: tuple[str, ...] = ()
    entry_status: tuple[str, ...] = ()
    tx_amount: tuple[str, ...] = ()


def pain_paths(version: int) -> Paths:
    """pain.002.001.<version>: where the creditor and the requested date are."""
    return Paths(
        creditor="OrgnlTxRef/Cdtr/Pty" if version >= 9 else "OrgnlTxRef/Cdtr",
        requested_date=("OrgnlTxRef/ReqdExctnDt/Dt", "OrgnlTxRef/ReqdExctnDt/DtTm")
        if version >= 8 else ("OrgnlTxRef/ReqdExctnDt",))


def camt_paths(version: int) -> Paths:
    """camt.054.001.<version>: where the status, the amount and the creditor are."""
    return Paths(
        creditor="RltdPties/Cdtr/Pty" if version >= 7 else "RltdPties/Cdtr",
        entry_status=("Sts/Cd", "Sts/Prtry") if version >= 7 else ("Sts",),
        tx_amount=(("Amt",) if version >= 3 else ())
        + ("AmtDtls/TxAmt/Amt", "AmtDtls/InstdAmt/Amt"))


def _iso(family: str, version: int) -> MessageType:
    name = f"{family}.001.{version:02d}"
    return MessageType(name, ISO_NS + name, f"{name}.xsd", version,
                       schema=f"ISO 20022 {name}")


#: National variants with a namespace of their own. Swiss (SIX) pain.002 ch.02: no
#: public copy of its XSD was found, so it is validated against ISO pain.002.001.03
#: retargeted to its namespace (the Swiss profile only restricts the ISO schema).
VARIANTS = (
    MessageType("pain.002.001.03.ch.02",
                "http://www.six-interbank-clearing.com/de/pain.002.001.03.ch.02.xsd",
                "pain.002.001.03.xsd", 3, variant="CH (SIX) ch.02",
                schema="ISO 20022 pain.002.001.03 (base; variant XSD not published openly)"),
)

MESSAGE_TYPES: dict[str, MessageType] = {t.namespace: t for t in (
    *(_iso("pain.002", v) for v in PAIN_VERSIONS),
    *(_iso("camt.054", v) for v in CAMT_VERSIONS), *VARIANTS)}

#: The version the benchmarks generate (tools/bench/bankfiles/).
CAMT_054_001_08 = MESSAGE_TYPES[ISO_NS + "camt.054.001.08"]


def paths_for(message_type: MessageType) -> Paths:
    if message_type.family == "pain.002":
        return pain_paths(message_type.version)
    return camt_paths(message_type.version)


@dataclass(frozen=True)
class Layout:
    """Where the streamed units sit in a message family.

    Attributes:
        message: the element under ``Document`` (``CstmrPmtStsRpt``...).
        container: repeated element holding units (a payment batch, an account).
        unit: the element streamed and validated one at a time. For pain.002 one
            unit is one transaction; for camt.054 one unit is one entry
            (``Ntry``), which holds one or more transactions (``TxDtls``).
    """

    message: str
    container: str
    unit: str

    @property
    def unit_path(self) -> str:
        """Schema path of the unit, for subtree validation."""
        return f"Document/{self.message}/{self.container}/{self.unit}"


LAYOUTS: dict[str, Layout] = {
    "pain.002": Layout("CstmrPmtStsRpt", "OrgnlPmtInfAndSts", "TxInfAndSts"),
    "camt.054": Layout("BkToCstmrDbtCdtNtfctn", "Ntfctn", "Ntry"),
}

_XS = "{http://www.w3.org/2001/XMLSchema}"


@cache
def xsd_bytes(message_type: MessageType) -> bytes:
    """The XSD text for ``message_type``: package data, retargeted to the variant's
    namespace when the variant is validated against its base version's XSD."""
    data = resources.files("services.enrichment.bankfiles").joinpath(
        "xsd", message_type.xsd).read_bytes()
    base_ns = f"{ISO_NS}{message_type.xsd.removesuffix('.xsd')}"
    if message_type.namespace != base_ns:
        data = data.replace(f'"{base_ns}"'.encode(), f'"{message_type.namespace}"'.encode())
    return data


@cache
def schema_for(message_type: MessageType) -> xmlschema.XMLSchema:
    """The compiled XSD of ``message_type`` (loaded once per process, ~0.2 s each).

    The XSDs are package data and self-contained (no include/import). Loading
    allows local files only and defuses XML, so neither the XSD nor the
    validated elements can make xmlschema reach the network.
    """
    return xmlschema.XMLSchema(io.BytesIO(xsd_bytes(message_type)), allow="local",
                               defuse="always")


@cache
def unit_declaration(message_type: MessageType) -> xmlschema.XsdElement:
    """The XSD element declaration the streamed unit is validated against."""
    schema = schema_for(message_type)
    layout = LAYOUTS[message_type.family]
    found = schema.find(layout.unit_path, namespaces={"": message_type.namespace})
    if not isinstance(found, xmlschema.XsdElement):  # pragma: no cover - shipped XSDs have it
        raise LookupError(f"{layout.unit_path} not declared in {message_type.xsd}")
    return found


@cache
def libxml2_schema_for(message_type: MessageType) -> etree.XMLSchema:
    """The same XSD compiled by libxml2, for streaming validation during the parse.

    The XSD bytes come from the package and are parsed with entities, DTDs and
    the network off; a schema that would pull in another document (include,
    import, redefine) is refused, so compiling it cannot load anything else.
    Compiled lazily: a process pays only for the versions it meets.
    """
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    document = etree.fromstring(xsd_bytes(message_type), parser)
    for tag in ("include", "import", "redefine", "override"):
        if document.find(f"{_XS}{tag}") is not None:  # pragma: no cover - shipped XSDs
            raise ValueError(f"{message_type.xsd} has xs:{tag}; only self-contained XSDs")
    return etree.XMLSchema(etree.ElementTree(document))
