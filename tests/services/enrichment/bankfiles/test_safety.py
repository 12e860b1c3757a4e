"""Hostile and broken files are refused with a reason, and nothing is fetched."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from services.enrichment.bankfiles import FileRejected, detect, read_bank_file
from tools.bench.bankfiles.gen import document, entry, with_entries

EXAMPLES = resources.files("shared.contracts").joinpath("examples", "iso20022")


def reject(data: bytes, max_bytes: int = 1 << 24) -> FileRejected:
    with pytest.raises(FileRejected) as caught:
        read_bank_file(io.BytesIO(data), partner="FIRSTBANK", max_bytes=max_bytes)
    return caught.value


class _Counting(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = b"<!ENTITY leaked 'yes'>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that records every request it gets."""
    hits: list[str] = []
    handler = type("Handler", (_Counting,), {"hits": hits})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def xxe(system_id: str, *, root_ns: str = "pain.002.001.10") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE Document [<!ENTITY e SYSTEM "{system_id}"> <!ENTITY % p SYSTEM "{system_id}/p"> %p;]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:{root_ns}"><CstmrPmtStsRpt><GrpHdr>
<MsgId>&e;</MsgId></GrpHdr></CstmrPmtStsRpt></Document>""".encode()


def test_xxe_over_http_fetches_nothing(server: tuple[str, list[str]]) -> None:
    url, hits = server
    assert reject(xxe(f"{url}/secret")).reason == "unsafe_xml"
    with pytest.raises(FileRejected):
        detect(io.BytesIO(xxe(f"{url}/secret")))
    assert hits == []


def test_xxe_on_a_local_file_reads_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    caught = reject(xxe(secret.as_uri()))
    assert caught.reason == "unsafe_xml"
    assert "TOP-SECRET" not in caught.detail


def test_doctype_after_a_comment_is_still_seen(server: tuple[str, list[str]]) -> None:
    url, hits = server
    data = b"<?xml version='1.0'?><!-- a --> \n" + xxe(f"{url}/x").split(b"?>", 1)[1]
    assert reject(data).reason == "unsafe_xml"
    assert hits == []


@pytest.mark.parametrize("name", ["xxe.xml", "billion-laughs.xml"])
def test_example_attacks_are_refused(name: str) -> None:
    caught = reject(EXAMPLES.joinpath(name).read_bytes())
    assert caught.reason == "unsafe_xml"
    assert "DOCTYPE" in caught.detail


def test_schema_invalid_example_says_where() -> None:
    caught = reject(EXAMPLES.joinpath("camt.054.001.08-schema-invalid.xml").read_bytes())
    assert caught.reason == "schema_invalid"
    assert "Ntry #2" in caught.detail and "Ccy" in caught.detail


def test_not_xml_example() -> None:
    assert reject(EXAMPLES.joinpath("not-xml.csv").read_bytes()).reason == "not_xml"


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "not_xml"),
    (b"<?xml version='1.0' encoding='ISO-8859-1'?><Document/>", "not_xml"),
    ("<?xml version='1.0' encoding='UTF-16'?><a/>".encode("utf-16"), "not_xml"),
    (document(3)[:-40], "not_xml"),
    (b"<Document xmlns='urn:example:other'/>", "unknown_message_type"),
    (b"<Other xmlns='urn:iso:std:iso:20022:tech:xsd:camt.054.001.08'/>",
     "unknown_message_type"),
    (b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.054.001.08'>"
     + b"<a>" * 60 + b"</a>" * 60 + b"</Document>", "unsafe_xml"),
    (b"<!-- " + b"x" * 70_000 + b" -->", "unsafe_xml"),
    # lxml's iterparse with a schema attached ends quietly at these instead of raising:
    (document(3).replace(b"GEN-1", b"GEN&1"), "not_xml"),
    (document(3).replace(b"</Document>\n", b""), "not_xml"),
    (document(300)[:-40], "not_xml"),
])
def test_broken_files_say_why(data: bytes, reason: str) -> None:
    assert reject(data).reason == reason


def test_too_large_stops_reading() -> None:
    data = document(50)
    assert reject(data, max_bytes=len(data) - 1).reason == "too_large"
    assert list(read_bank_file(io.BytesIO(data), partner="FIRSTBANK", max_bytes=len(data)))


def test_late_schema_error_rejects_before_any_item() -> None:
    """A bad entry at the end refuses the file up front: nothing is yielded."""
    data = with_entries(*(entry(i) for i in range(20)), entry(20, currency="usd"))
    caught = reject(data)
    assert caught.reason == "schema_invalid" and "Ntry #21" in caught.detail


def test_skeleton_is_validated_too() -> None:
    data = document(2).replace(b"<MsgId>GEN-1</MsgId>", b"")
    assert reject(data).reason == "schema_invalid"
