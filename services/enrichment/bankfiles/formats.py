"""Supported ISO 20022 messages: namespaces, shipped XSDs, and where transactions are.

Detection is by the root element's namespace only (docs/bankfiles.md,
"Detection"); a file whose root is not ``Document`` in one of these namespaces
is ``unknown_message_type``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import xmlschema
from lxml import etree

from services.enrichment.bankfiles.types import MessageType

_NS = "urn:iso:std:iso:20022:tech:xsd:"

PAIN_002_001_03 = MessageType("pain.002.001.03", _NS + "pain.002.001.03", "pain.002.001.03.xsd")
PAIN_002_001_10 = MessageType("pain.002.001.10", _NS + "pain.002.001.10", "pain.002.001.10.xsd")
CAMT_054_001_02 = MessageType("camt.054.001.02", _NS + "camt.054.001.02", "camt.054.001.02.xsd")
CAMT_054_001_08 = MessageType("camt.054.001.08", _NS + "camt.054.001.08", "camt.054.001.08.xsd")

MESSAGE_TYPES: dict[str, MessageType] = {
    t.namespace: t for t in (PAIN_002_001_03, PAIN_002_001_10, CAMT_054_001_02, CAMT_054_001_08)}


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


@cache
def schema_for(message_type: MessageType) -> xmlschema.XMLSchema:
    """The compiled XSD of ``message_type`` (loaded once per process, ~0.2 s each).

    The XSDs are package data and self-contained (no include/import). Loading
    allows local files only and defuses XML, so neither the XSD nor the
    validated elements can make xmlschema reach the network.
    """
    path = resources.files("services.enrichment.bankfiles").joinpath("xsd", message_type.xsd)
    with resources.as_file(path) as file:
        return xmlschema.XMLSchema(str(file), allow="local", defuse="always")


@cache
def unit_declaration(message_type: MessageType) -> xmlschema.XsdElement:
    """The XSD element declaration the streamed unit is validated against."""
    schema = schema_for(message_type)
    layout = LAYOUTS[message_type.family]
    found = schema.find(layout.unit_path, namespaces={"": message_type.namespace})
    if not isinstance(found, xmlschema.XsdElement):  # pragma: no cover - shipped XSDs have it
        raise LookupError(f"{layout.unit_path} not declared in {message_type.xsd}")
    return found


_XS = "{http://www.w3.org/2001/XMLSchema}"


@cache
def libxml2_schema_for(message_type: MessageType) -> etree.XMLSchema:
    """The same XSD compiled by libxml2, for streaming validation during the parse.

    The XSD bytes come from the package and are parsed with entities, DTDs and
    the network off; a schema that would pull in another document (include,
    import, redefine) is refused, so compiling it cannot load anything else.
    """
    data = resources.files("services.enrichment.bankfiles").joinpath(
        "xsd", message_type.xsd).read_bytes()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    document = etree.fromstring(data, parser)
    for tag in ("include", "import", "redefine", "override"):
        if document.find(f"{_XS}{tag}") is not None:  # pragma: no cover - shipped XSDs
            raise ValueError(f"{message_type.xsd} has xs:{tag}; only self-contained XSDs")
    return etree.XMLSchema(etree.ElementTree(document))
