"""Streaming split, two-pass reading and the public entry points.

Pass 1 parses the whole file safely and validates it against the XSD, one unit
(transaction or entry) at a time, then the remaining skeleton (headers and
containers without their units). Pass 2 parses again and maps units to
notifications. Both passes clear each unit once done, so memory does not grow
with the number of transactions (docs/bankfiles.md, "Memory").
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from typing import IO, Any, cast

from lxml import etree

from services.enrichment.bankfiles import extract, formats, safexml
from services.enrichment.bankfiles.mapping import (
    DEFAULT_INVOICE_PATTERN,
    PARTNER,
    Options,
    finish,
)
from services.enrichment.bankfiles.types import (
    FileRejected,
    MessageType,
    StatusReport,
    Transaction,
    TransactionRejected,
)

Item = Transaction | TransactionRejected | StatusReport

#: A unit (one transaction or entry) may not have more elements than this.
MAX_UNIT_ELEMENTS = 5_000
#: Elements outside units (headers, containers) kept until the end of pass 1.
MAX_SKELETON_ELEMENTS = 50_000
_CLARK = re.compile(r"\{[^}]*\}")
_DETECT_BYTES = safexml.PROLOG_LIMIT + 4096
_PAYMENT_METHODS = {"ACH", "WIRE", "SEPA", "SWIFT", "RTP", "CHECK"}

Element = etree._Element


def _message_type(root: Element) -> MessageType:
    qname = etree.QName(root)
    found = formats.MESSAGE_TYPES.get(qname.namespace or "")
    if found is None or qname.localname != "Document":
        raise FileRejected(
            "unknown_message_type", f"root element {root.tag!r} is not a Document of a "
            "supported message (pain.002.001.03 to .14, camt.054.001.02 to .12, or a "
            "variant listed in docs/bankfiles.md)")
    return found


def _detect(source: IO[bytes]) -> MessageType:
    for _event, element in safexml.events(source):
        return _message_type(element)
    raise FileRejected("not_xml", "no root element")  # pragma: no cover - parser raises first


def detect(stream: IO[bytes]) -> MessageType:
    """The message type of a bank file, from its root element's namespace.

    Reads at most the first 68 KiB (the prolog and root start tag must be in
    them) and applies the same safety rules as :func:`read_bank_file` (no
    DOCTYPE, UTF-8 only). The stream is left partly consumed.

    Raises:
        FileRejected: ``not_xml``, ``unsafe_xml`` or ``unknown_message_type``.
    """
    return _detect(io.BytesIO(stream.read(_DETECT_BYTES)))


def _walk(source: IO[bytes], message_type: MessageType,
          schema: etree.XMLSchema | None = None) -> Iterator[tuple[str, Element]]:
    """Yield ``("unit", element)`` per unit, ``("end", element)`` per other finished
    element, then ``("done", root)``. A unit is cleared and detached after the
    consumer has handled it; containers lose their units when they end."""
    layout = formats.LAYOUTS[message_type.family]
    ns = message_type.namespace
    unit_tag, container_tag = f"{{{ns}}}{layout.unit}", f"{{{ns}}}{layout.container}"
    root: Element | None = None
    in_unit, unit_elements, skeleton = False, 0, 0
    for event, element in safexml.events(source, schema=schema):
        if event == "start":
            if root is None:
                root = element
                if _message_type(element) != message_type:  # pragma: no cover - same file
                    raise FileRejected("unknown_message_type", "root changed between passes")
            if in_unit:
                unit_elements += 1
                if unit_elements > MAX_UNIT_ELEMENTS:
                    raise FileRejected("too_large", f"a {layout.unit} has more than "
                                       f"{MAX_UNIT_ELEMENTS} elements (line {element.sourceline})")
            elif element.tag == unit_tag:
                in_unit, unit_elements = True, 1
            else:
                skeleton += 1
                if skeleton > MAX_SKELETON_ELEMENTS:
                    raise FileRejected("too_large", f"more than {MAX_SKELETON_ELEMENTS} "
                                       "elements outside transactions")
            continue
        if in_unit and element.tag == unit_tag:
            in_unit = False
            yield "unit", element
            element.clear()
            parent = element.getparent()
            previous = element.getprevious()
            while parent is not None and previous is not None and previous.tag == unit_tag:
                parent.remove(previous)
                previous = element.getprevious()
        elif not in_unit:
            if element.tag == container_tag:
                for child in element.findall(unit_tag):
                    element.remove(child)
            yield "end", element
    if root is None:  # pragma: no cover - the parser raises on an empty document
        raise FileRejected("not_xml", "no root element")
    yield "done", root


def _validate(source: IO[bytes], message_type: MessageType) -> None:
    """Pass 1: libxml2 validates the whole file while it streams (fast). A file it
    refuses as malformed or invalid is read again by :func:`_locate`, with the
    plain parser and xmlschema, for an exact reason and the unit number; only bad
    files pay for that."""
    try:
        for _ in _walk(source, message_type, formats.libxml2_schema_for(message_type)):
            pass
    except FileRejected as exc:
        if exc.reason not in ("schema_invalid", "not_xml"):
            raise
        _locate(source, message_type)
        raise


def _locate(source: IO[bytes], message_type: MessageType) -> None:
    """Every unit against its XSD declaration with xmlschema, then the skeleton:
    slow, but its error names the unit number and line. Returns when it finds
    nothing (the caller then reports libxml2's message)."""
    layout = formats.LAYOUTS[message_type.family]
    declaration = formats.unit_declaration(message_type)
    count = 0
    for kind, element in _walk(source, message_type):
        if kind == "unit":
            count += 1
            error = next(declaration.iter_errors(cast(Any, element)), None)
            if error is not None:
                raise FileRejected("schema_invalid", f"{layout.unit} #{count} (line "
                                   f"{element.sourceline}): {_local(error.path)}: {error.reason}")
        elif kind == "done":
            error = next(formats.schema_for(message_type).iter_errors(cast(Any, element)), None)
            if error is not None:
                raise FileRejected("schema_invalid", f"{_local(error.path)}: {error.reason}")


def _local(path: str | None) -> str:
    """An error path without namespaces, for readable details."""
    return _CLARK.sub("", path or "")


def _items(source: IO[bytes], message_type: MessageType, options: Options,
           start_index: int) -> Iterator[Item]:
    """Pass 2: map units in file order; items before ``start_index`` are counted but
    not mapped. A pain.002 batch or group status without transactions is an item
    too (:class:`StatusReport`), in file order."""
    ctx = extract.Context(message_type)
    pain = message_type.family == "pain.002"
    family = extract.pain002 if pain else extract.camt054
    container = f"{{{message_type.namespace}}}{formats.LAYOUTS[message_type.family].container}"
    index = 0
    try:
        for kind, element in _walk(source, message_type):
            report: StatusReport | None = None
            if kind == "end":
                if pain and element.tag == container:
                    report = extract.payment_report(ctx, index)
                ctx.observe(element)
            elif kind == "done":
                report = extract.group_report(ctx, index) if pain else None
            else:
                ctx.unit_seen()
                for draft in family(element, ctx):
                    if index >= start_index:
                        yield finish(index, draft, options)
                    index += 1
            if report is not None:
                if index >= start_index:
                    yield report
                index += 1
    finally:
        source.close()


def read_bank_file(
    stream: IO[bytes], *, partner: str, source_key: str | None = None,
    payee_map: Mapping[str, str] | None = None, payment_method: str | None = None,
    start_index: int = 0, max_bytes: int = safexml.DEFAULT_MAX_BYTES,
    invoice_from_end_to_end: bool = False,
) -> Iterator[Item]:
    """Read a pain.002 or camt.054 file into partner notifications.

    The whole file is checked before this function returns: size, safety rules
    (no DOCTYPE, no entities, no network, bounded depth), message type and XSD
    validity. So a :class:`FileRejected` is raised here, never halfway through
    the returned iterator, and a truncated or corrupted file yields nothing.

    The iterator then yields one item per transaction in file order, with
    ``index`` counting from 0: a :class:`Transaction` whose notification has
    passed ``PartnerNotification.model_validate``, or a
    :class:`TransactionRejected` (bad or not-final transaction; the rest of the
    file continues), or a :class:`StatusReport` (a pain.002 batch or group status
    that lists no transaction). Memory stays flat in the number of transactions.

    Args:
        stream: the file, read once from its current position (need not seek).
        partner: partner code (``^[A-Z0-9_]{2,32}$``), e.g. from the S3 key prefix.
        source_key: S3 key, copied into each notification as ``source_file``.
        payee_map: bank creditor id/name → payee id; when given, creditors not in
            it are rejected (``unknown_payee``).
        payment_method: forces ``payment_method``; default SEPA for EUR, else SWIFT.
        start_index: resume point: the first ``start_index`` transactions are
            skipped without mapping (the file is still fully validated).
        max_bytes: larger files are refused (``too_large``) without reading on.
        invoice_from_end_to_end: a transaction without a structured or free-text
            invoice reference takes its end-to-end id as the invoice id (a
            per-partner switch; docs/bankfiles.md, "Reference rules").

    Raises:
        ValueError: bad ``partner``, ``payment_method`` or ``start_index``.
        FileRejected: ``not_xml``, ``unsafe_xml``, ``unknown_message_type``,
            ``schema_invalid`` or ``too_large``.
    """
    if not PARTNER.match(partner):
        raise ValueError(f"partner {partner!r} does not match {PARTNER.pattern}")
    if payment_method is not None and payment_method not in _PAYMENT_METHODS:
        raise ValueError(f"payment_method {payment_method!r} not in {sorted(_PAYMENT_METHODS)}")
    if start_index < 0:
        raise ValueError("start_index must be >= 0")
    options = Options(partner, source_key, payee_map, payment_method, DEFAULT_INVOICE_PATTERN,
                      invoice_from_end_to_end)
    source = safexml.spool(stream, max_bytes)
    try:
        message_type = _detect(source)
        _validate(source, message_type)
    except BaseException:
        source.close()
        raise
    return _items(source, message_type, options, start_index)
