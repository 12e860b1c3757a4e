"""The emulator's request-routing caches (``shared/aws/emulator_http.py``): the same
answers as moto's own functions, computed once instead of on every request."""

from __future__ import annotations

import os
from typing import Any

import pytest

from shared.aws import emulator_http


@pytest.mark.unit
def test_the_module_listing_is_moto_s_and_reads_the_disk_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import moto
    from moto import backends

    here = os.path.dirname(moto.__file__)
    expected = sorted(b for b in os.listdir(here)
                      if os.path.isdir(os.path.join(here, b)) and not b.startswith("__"))
    emulator_http.install()
    listed: list[str] = []

    def listdir(path: str) -> list[str]:
        listed.append(path)
        return []

    monkeypatch.setattr(os, "listdir", listdir)
    assert list(backends.list_of_moto_modules()) == expected
    assert "dynamodb" in backends.list_of_moto_modules()   # how the router asks
    assert listed == [], "no directory listing per request"


@pytest.mark.unit
def test_method_names_are_moto_s_and_computed_once_per_class() -> None:
    import inspect

    from moto.core import responses
    from moto.dynamodb.responses import DynamoHandler
    from moto.sqs.responses import SQSResponse

    emulator_http.install()
    names: Any = responses.method_names_from_class  # type: ignore[attr-defined]
    for cls in (DynamoHandler, SQSResponse):
        expected = [n for n, _ in inspect.getmembers(cls, predicate=inspect.isfunction)]
        before = names.cache_info()
        assert names(cls) == expected and names(cls) is names(cls)
        after = names.cache_info()
        assert after.hits - before.hits >= 2


@pytest.mark.unit
def test_install_is_idempotent_and_version_guarded() -> None:
    from moto import backends

    emulator_http.install()
    first = backends.list_of_moto_modules
    emulator_http.install()
    assert backends.list_of_moto_modules is first


def test_one_connection_serves_request_after_request(emulator: str) -> None:
    """Keep-alive (``request_handler``): an error answer and a body the application never
    reads leave the connection usable; the next request on it is answered. (With
    ``REMITFLOW_EMULATOR_SFN_CACHE=off``, moto as shipped, it fails: every answer closes.)"""
    import http.client
    from urllib.parse import urlparse

    url = urlparse(emulator)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
               "Authorization": "AWS4-HMAC-SHA256 Credential=t/20261203/us-east-1/ses/"
                                "aws4_request, SignedHeaders=host, Signature=x"}
    missing = "Action=DescribeConfigurationSet&Version=2010-12-01&ConfigurationSetName=none"
    answers = []
    for body in (missing, missing + "&Unread=" + "x" * 70_000, "Action=ListIdentities"
                 "&Version=2010-12-01"):
        conn.request("POST", "/", body=body, headers=headers)
        resp = conn.getresponse()
        answers.append((resp.status, resp.getheader("Connection")))
        resp.read()
        assert conn.sock is not None, "the emulator closed the connection"
    conn.close()
    assert answers == [(400, None), (400, None), (200, None)]


def test_an_upload_that_expects_100_continue_gets_it_before_sending_its_body(
        emulator: str) -> None:
    """Answers leave through a buffer (``RESPONSE_BUFFER``); the interim ``100 Continue``
    must not wait in it, or an S3 upload that asks for it hangs until its timeout."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(emulator)
    auth = ("AWS4-HMAC-SHA256 Credential=t/20261204/us-east-1/s3/aws4_request, "
            "SignedHeaders=host, Signature=x")
    bucket = "expect-" + os.urandom(4).hex()
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80),
                                  timeout=5) as sock:
        def request(path: str, body: bytes, expect: bool) -> bytes:
            head = (f"PUT /{path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                    f"Authorization: {auth}\r\nContent-Length: {len(body)}\r\n"
                    + ("Expect: 100-continue\r\n" if expect else "") + "\r\n")
            sock.sendall(head.encode())
            if expect:
                interim = sock.recv(65536)    # a timeout here is the hang
                assert interim.startswith(b"HTTP/1.1 100"), interim
            sock.sendall(body)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(65536)
            length = int(next(line.split(b":")[1] for line in answer.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(answer.split(b"\r\n\r\n", 1)[1]) < length:
                answer += sock.recv(65536)
            return answer

        assert request(bucket, b"", expect=False).startswith(b"HTTP/1.1 200")
        assert request(f"{bucket}/file.xml", b"<Document/>" * 100,
                       expect=True).startswith(b"HTTP/1.1 200")
