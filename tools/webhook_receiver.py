"""A small webhook receiver for the demo (``127.0.0.1:9900``): verifies, prints, counts.

It checks each request with the ``standardwebhooks`` package (an independent
implementation of the Standard Webhooks signature), keeps what it received per
``webhook-id`` so duplicates are visible, and can be told to answer with a given
status for a while (tests use that to simulate an outage).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Receiver:
    def __init__(self, secret: str, host: str = "127.0.0.1", port: int = 9900,
                 *, echo: bool = False) -> None:
        self.verifier = Webhook(secret)
        self.received: list[dict[str, Any]] = []
        self.by_id: Counter[str] = Counter()
        self.rejected = 0
        self.script: list[int] = []  # statuses to answer before 200s resume
        self.echo = echo
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self.port = int(self._server.server_address[1])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    if receiver.script:
                        status = receiver.script.pop(0)
                        self._reply(status)
                        return
                    try:
                        payload = receiver.verifier.verify(body, headers)
                    except WebhookVerificationError:
                        receiver.rejected += 1
                        self._reply(401)
                        return
                    webhook_id = headers.get("webhook-id", "")
                    receiver.by_id[webhook_id] += 1
                    receiver.received.append({"id": webhook_id, "payload": payload})
                if receiver.echo:
                    data = payload.get("data", {}) if isinstance(payload, dict) else {}
                    print(f"  webhook ✓ {webhook_id} {data.get('request_id')} "
                          f"{data.get('amount')} {data.get('currency')} (signature verified)",
                          flush=True)
                self._reply(200)

            def _reply(self, status: int) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"status": status}).encode())

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    def start(self) -> Receiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
