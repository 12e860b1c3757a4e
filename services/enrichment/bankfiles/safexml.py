"""Hardened, streaming XML reading for untrusted bank files.

Rules (docs/bankfiles.md, "Safety rules"):

* only UTF-8 (ISO 20022 mandates it), so the prolog can be checked on bytes;
* no document type declaration at all: a ``<!DOCTYPE`` in the prolog is refused
  before the parser sees the file, and again on the parser's first event
  (``docinfo.doctype``) as a second line of defence. Without a DTD there are no
  entities to expand (billion laughs) and no external entities to fetch (XXE);
* the parser itself is configured never to load DTDs, resolve entities or
  touch the network (``load_dtd=False, resolve_entities=False, no_network=True``)
  and keeps libxml2's size limits on (``huge_tree=False``);
* bounded input size (``max_bytes``, checked while spooling) and nesting depth.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from typing import IO, Any, cast

from lxml import etree

from services.enrichment.bankfiles.types import FileRejected

#: Default cap on a bank file's size. 100,000 camt.054 entries are about 150 MB.
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
#: ISO 20022 messages nest about 15 levels deep; anything far deeper is hostile.
MAX_DEPTH = 48
#: The prolog (XML declaration, comments) must end within this many bytes.
PROLOG_LIMIT = 64 * 1024
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_CHUNK = 1 << 16
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_UTF8_NAMES = {b"utf-8", b"utf8", b"us-ascii", b"ascii"}
_BOMS_REFUSED = (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00", b"\xfe\xff", b"\xff\xfe")
_WS = b" \t\r\n"

ElementEvent = tuple[str, "etree._Element"]


def spool(stream: IO[bytes], max_bytes: int) -> IO[bytes]:
    """A seekable source for the reader's two passes, refusing more than ``max_bytes``.

    A seekable stream at its start (a file the caller already has on disk, such
    as the file intake's one download) is used in place: it is not copied a second time, so
    a file needs its size in scratch space once, not twice. Anything else (an S3
    body, a pipe) is copied into a temporary file: small files stay in memory,
    larger ones go to disk.

    Raises:
        FileRejected: ``too_large`` as soon as the limit is passed (the rest of
            the stream is not read).
    """
    if _seekable(stream) and stream.tell() == 0:
        if stream.seek(0, 2) > max_bytes:
            raise FileRejected("too_large", f"file is larger than {max_bytes} bytes")
        stream.seek(0)
        return stream
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
    total = 0
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            out.close()
            raise FileRejected("too_large", f"file is larger than {max_bytes} bytes")
        out.write(chunk)
    out.seek(0)
    return out


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError):
        return False


def check_prolog(head: bytes) -> None:
    """Refuse anything but UTF-8 XML whose prolog has no DOCTYPE.

    Args:
        head: the first bytes of the file (at least :data:`PROLOG_LIMIT`, or all
            of it when shorter).

    Raises:
        FileRejected: ``not_xml`` for non-UTF-8 or non-XML content, ``unsafe_xml``
            for a DOCTYPE or an over-long prolog.
    """
    if head.startswith(_BOMS_REFUSED) or b"\x00" in head[:256]:
        raise FileRejected("not_xml", "only UTF-8 is accepted (ISO 20022 files are UTF-8)")
    text = head.removeprefix(b"\xef\xbb\xbf")
    pos = 0
    while True:
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        if text.startswith(b"<?", pos):
            end = text.find(b"?>", pos)
            if end < 0:
                break
            _check_declared_encoding(text[pos:end])
            pos = end + 2
        elif text.startswith(b"<!--", pos):
            end = text.find(b"-->", pos + 4)
            if end < 0:
                break
            pos = end + 3
        elif text.startswith(b"<!", pos):
            raise FileRejected(
                "unsafe_xml", "document type declarations (DOCTYPE) are refused: they enable "
                "entity expansion and external entities")
        elif text.startswith(b"<", pos):
            return
        elif pos < len(text):
            raise FileRejected("not_xml", f"no XML element at byte {pos}")
        else:
            break
    if len(head) >= PROLOG_LIMIT:
        raise FileRejected("unsafe_xml", f"no root element within the first {PROLOG_LIMIT} bytes")
    raise FileRejected("not_xml", "no root element (empty or truncated file)")


def _check_declared_encoding(declaration: bytes) -> None:
    if not declaration.startswith(b"<?xml"):
        return
    match = _ENCODING.search(declaration)
    if match and match.group(1).lower() not in _UTF8_NAMES:
        name = match.group(1).decode("ascii")
        raise FileRejected("not_xml", f"encoding {name!r} refused; ISO 20022 files are UTF-8")


def events(source: IO[bytes], *, max_depth: int = MAX_DEPTH,
           schema: etree.XMLSchema | None = None) -> Iterator[ElementEvent]:
    """Stream ``("start" | "end", element)`` events from a checked, seekable file.

    The caller owns memory: it must clear elements it has finished with. With
    ``schema``, libxml2 validates while it parses (streaming, same parser flags);
    its errors carry no reliable line or unit number.

    Raises:
        FileRejected: ``unsafe_xml``/``not_xml`` from :func:`check_prolog`,
            ``unsafe_xml`` if the parser reports a DOCTYPE or nesting exceeds
            ``max_depth``, ``not_xml`` for any well-formedness error,
            ``schema_invalid`` for the first error of ``schema``.
    """
    source.seek(0)
    check_prolog(source.read(PROLOG_LIMIT))
    source.seek(0)
    parser = etree.iterparse(
        source, events=("start", "end"), resolve_entities=False, no_network=True,
        load_dtd=False, dtd_validation=False, huge_tree=False, remove_comments=True,
        remove_pis=True, recover=False, schema=schema)
    depth = 0
    try:
        for event, element in parser:
            if event == "start":
                depth += 1
                if depth == 1 and element.getroottree().docinfo.doctype:
                    raise FileRejected("unsafe_xml", "document type declarations are refused")
                if depth > max_depth:
                    raise FileRejected(
                        "unsafe_xml", f"elements nested deeper than {max_depth} levels "
                        f"(line {element.sourceline})")
            else:
                depth -= 1
            yield event, element
        if depth:
            # With a schema attached, lxml may end the iteration at a syntax error
            # without raising: a document is complete only once its root has closed.
            raise FileRejected("not_xml", "the document ended before its root element closed")
    except etree.XMLSyntaxError as exc:
        errors: list[Any] = list(cast(Any, exc.error_log))  # lxml-stubs: not iterable
        invalid = [e for e in errors if e.domain == etree.ErrorDomains.SCHEMASV]
        if invalid and not [e for e in errors if e.domain == etree.ErrorDomains.PARSER]:
            raise FileRejected("schema_invalid", invalid[0].message) from exc
        raise FileRejected("not_xml", f"not well-formed XML: {exc}") from exc
