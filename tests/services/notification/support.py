"""Test helpers: advice factory and a tiny scripted HTTP server for webhook tests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.domain.advice import AdviceInvoice, AdvicePayee, RemittanceAdvice

SECRET = "whsec_cmVtaXRmbG93LWRlbW8td2ViaG9vay1zZWNyZXQtMzJi"


def make_payee(**overrides: Any) -> AdvicePayee:
    values: dict[str, Any] = {
        "payee_id": "PAYEE-0002", "name": "Brandt Software GmbH",
        "email": "finance@brandt.example", "payee_type": "developer", "country": "DE",
        "locale": "de-DE", "channel": "email", "account_last4": "4321"}
    values.update(overrides)
    return AdvicePayee(**values)


def make_invoice(**overrides: Any) -> AdviceInvoice:
    values: dict[str, Any] = {
        "invoice_id": "INV-2001", "amount": Decimal("1234.56"), "currency": "EUR",
        "description": "App store revenue share October", "purpose": "invoice_payment"}
    values.update(overrides)
    return AdviceInvoice(**values)


def make_advice(*, payee: AdvicePayee | None = None, **overrides: Any) -> RemittanceAdvice:
    """A settled EUR SEPA advice to Brandt Software (the demo data), with overrides."""
    values: dict[str, Any] = {
        "request_id": "REQ-2026-000002", "payment_id": "PAY-88002", "partner": "EUROCLEARING",
        "partner_status": "SETTLED", "payment_method": "SEPA", "amount": Decimal("1234.56"),
        "currency": "EUR", "minor_units": 2, "value_date": "2026-11-24",
        "occurred_at": "2026-11-24T09:00:00+01:00", "partner_reference": "E2E-5Q1X",
        "purpose": "invoice_payment", "payee": payee or make_payee(),
        "invoices": [make_invoice()], "enriched_at": "2026-11-24T08:00:02Z"}
    values.update(overrides)
    return RemittanceAdvice(**values)


def make_usd_author_advice(**overrides: Any) -> RemittanceAdvice:
    """The demo USD ACH royalty payment to Ada Lovelace Books (en-US)."""
    payee = make_payee(payee_id="PAYEE-0001", name="Ada Lovelace Books LLC",
                       email="ap@ada-books.example", payee_type="author", country="US",
                       locale="en-US", account_last4="6789")
    values: dict[str, Any] = {
        "request_id": "REQ-2026-000001", "payment_id": "PAY-77001", "partner": "FIRSTBANK",
        "payment_method": "ACH", "amount": Decimal("1250.00"), "currency": "USD",
        "occurred_at": "2026-11-24T14:03:11Z",
        "partner_reference": "ACH-TRACE-091000019-0000042", "purpose": "royalty",
        "payee": payee,
        "invoices": [
            make_invoice(invoice_id="INV-1001", amount=Decimal("1000.00"), currency="USD",
                         description="Royalties Q3 2026", purpose="royalty"),
            make_invoice(invoice_id="INV-1002", amount=Decimal("250.00"), currency="USD",
                         description="Audiobook royalties Q3 2026", purpose="royalty")]}
    values.update(overrides)
    return make_advice(**values)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay_s: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    """An HTTP server on 127.0.0.1 answering each path from a queue of replies.

    When a path's queue is empty it answers 200. Every request is recorded.
    """

    def __init__(self) -> None:
        self.script: dict[str, list[Reply]] = {}
        self.received: list[Received] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with owner._lock:
                    owner.received.append(Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    queue = owner.script.get(self.path) or []
                    reply = queue.pop(0) if queue else Reply()
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # client gave up (timeout test)

            do_POST = _handle
            do_GET = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def on(self, path: str, *replies: Reply) -> str:
        """Queue replies for ``path``; returns its full URL."""
        with self._lock:
            self.script.setdefault(path, []).extend(replies)
        return self.base_url + path

    def hits(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
