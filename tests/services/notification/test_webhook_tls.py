"""Webhook TLS: pinned to the checked address, pooled per host name, verified per host.

A local TLS server on 127.0.0.1 serves two names with SNI (each its own certificate
from a CA made here); the client trusts only that CA. Requests to host A and host B
go to the same address: each must verify its own certificate and never ride the
other's connection.
"""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.notification.pools import HostPools
from services.notification.webhook import deliver, webhook_id_for
from tests.services.notification.support import SECRET, make_advice

PAYLOAD = make_advice().model_dump(mode="json")
HOSTS = ("payee-a.test", "payee-b.test")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          signer: ec.EllipticCurvePrivateKey, *, ca: bool, san: str | None = None
          ) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class SniServer:
    """HTTPS on 127.0.0.1 with one certificate per SNI name; records what it saw."""

    tmp: Path
    handshakes: dict[str, int] = field(default_factory=dict)
    # (SNI of the connection, Host header of the request) for every request served
    requests: list[tuple[str, str]] = field(default_factory=list)
    ca_pem: bytes = b""
    port: int = 0

    def start(self, names: tuple[str, ...], *, wrong_cert_for: str | None = None) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("remitflow test CA", ca_key, _name("remitflow test CA"), ca_key, ca=True)
        self.ca_pem = _pem(ca)
        contexts: dict[str, ssl.SSLContext] = {}
        for host in names:
            key = ec.generate_private_key(ec.SECP256R1())
            san = names[0] if host == wrong_cert_for else host
            leaf = _cert(san, key, ca.subject, ca_key, ca=False, san=san)
            cert_file, key_file = self.tmp / f"{host}.pem", self.tmp / f"{host}.key"
            cert_file.write_bytes(_pem(leaf) + self.ca_pem)
            key_file.write_bytes(_key_pem(key))
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert_file, key_file)
            contexts[host] = ctx
        default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        default.load_cert_chain(self.tmp / f"{names[0]}.pem", self.tmp / f"{names[0]}.key")
        server_ref = self

        def on_sni(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None,
                   _ctx: ssl.SSLContext) -> None:
            server_ref.handshakes[name or "-"] = server_ref.handshakes.get(name or "-", 0) + 1
            sock.remitflow_sni = name or "-"  # type: ignore[union-attr]
            if name in contexts:
                sock.context = contexts[name]

        default.sni_callback = on_sni

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keep-alive: connections can be reused

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                sni = getattr(self.connection, "remitflow_sni", "-")
                server_ref.requests.append((sni, self.headers.get("host", "")))
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.socket = default.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[SniServer]:
    server = SniServer(tmp_path)
    yield server
    server.stop()


async def _loopback(host: str, port: int) -> list[str]:
    assert host in HOSTS or host == "payee-c.test", host
    return ["127.0.0.1"]


def _trusting(server: SniServer) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    return ctx


async def _post(pools: HostPools, host: str, port: int) -> Any:
    return await deliver(pools, url=f"https://{host}:{port}/hook", secret=SECRET,
                         msg_id=webhook_id_for("REQ-TLS"), payload=PAYLOAD, timeout_s=5.0,
                         allow_private=True, resolver=_loopback, max_quick_retries=0)


async def test_each_host_verifies_its_certificate_and_never_shares_a_connection(
        tls_server: SniServer) -> None:
    tls_server.start(HOSTS)
    pools = HostPools(verify=_trusting(tls_server))
    try:
        for host in (*HOSTS, *HOSTS, HOSTS[0]):
            result = await _post(pools, host, tls_server.port)
            assert result.outcome == "delivered", result.detail
    finally:
        await pools.aclose()
    # Every request rode a connection whose TLS name is its own host.
    assert [sni for sni, _ in tls_server.requests] == [h.split(":")[0] for _, h in
                                                       tls_server.requests]
    assert len(tls_server.requests) == 5
    # One handshake per host: connections are reused, but only by their own host.
    assert tls_server.handshakes == {HOSTS[0]: 1, HOSTS[1]: 1}


async def test_a_certificate_for_another_host_is_refused(tls_server: SniServer) -> None:
    """payee-c.test presents payee-a.test's certificate: not delivered, nothing served."""
    tls_server.start((*HOSTS, "payee-c.test"), wrong_cert_for="payee-c.test")
    pools = HostPools(verify=_trusting(tls_server))
    try:
        assert (await _post(pools, HOSTS[0], tls_server.port)).outcome == "delivered"
        refused = await _post(pools, "payee-c.test", tls_server.port)
    finally:
        await pools.aclose()
    assert refused.outcome == "transient"
    assert "certificate" in refused.detail.lower() or "verify" in refused.detail.lower()
    assert [sni for sni, _ in tls_server.requests] == [HOSTS[0]]


async def test_pools_are_bounded() -> None:
    pools = HostPools(max_hosts=2)
    try:
        first = pools.client(("https", "a.test", 443))
        pools.client(("https", "b.test", 443))
        assert pools.client(("https", "a.test", 443)) is first   # recently used again
        pools.client(("https", "c.test", 443))                     # evicts b.test
        assert len(pools) == 2
        assert pools.client(("https", "a.test", 443)) is first
    finally:
        await pools.aclose()
