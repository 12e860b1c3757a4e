"""A small webhook receiver for the demo (``127.0.0.1:9900``): verifies, prints, counts.

It checks each request with the ``standardwebhooks`` package (an independent
implementation of the Standard Webhooks signature), keeps what it received per
``webhook-id`` so duplicates are visible, and can be told to answer with a given
status for a while (tests use that to simulate an outage).

As a process (``python -m tools.webhook_receiver --secret whsec_... --port 9900
--down-for-s 30``) it answers 503 for ``--down-for-s`` seconds from the first
request on, and
``GET /received`` returns what it has seen as JSON (an end-to-end test reads it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
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
        self.down_for_s = 0.0  # an outage: 503 for this long from the first POST on
        self._down_since: float | None = None
        self.refused = 0
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
                    now = time.monotonic()
                    if receiver._down_since is None:
                        receiver._down_since = now
                    if now < receiver._down_since + receiver.down_for_s:
                        receiver.refused += 1
                        self._reply(503)
                        return
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
                    receiver.received.append({"id": webhook_id, "payload": payload,
                                              "traceparent": headers.get("traceparent")})
                if receiver.echo and receiver.by_id[webhook_id] > 1:
                    # Standard Webhooks: a receiver processes each webhook-id once.
                    print(f"  webhook ↺ {webhook_id} seen before: dropped by its id", flush=True)
                elif receiver.echo:
                    data = payload.get("data", {}) if isinstance(payload, dict) else {}
                    print(f"  webhook ✓ {webhook_id} {data.get('request_id')} "
                          f"{data.get('amount')} {data.get('currency')} (signature verified)",
                          flush=True)
                self._reply(200)

            def do_GET(self) -> None:
                with receiver._lock:
                    state = {"received": receiver.received, "by_id": dict(receiver.by_id),
                             "rejected": receiver.rejected, "refused": receiver.refused}
                self._reply(200, state)

            def _reply(self, status: int, body: Any = None) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body or {"status": status}).encode())

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    def start(self) -> Receiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--secret", required=True, help="whsec_<base64> signing secret")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9900)
    p.add_argument("--down-for-s", type=float, default=0.0,
                   help="answer 503 this long from the first request")
    args = p.parse_args()
    receiver = Receiver(args.secret, args.host, args.port, echo=True)
    receiver.down_for_s = args.down_for_s
    print(f"listening on {args.host}:{receiver.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        receiver._server.serve_forever()


if __name__ == "__main__":
    main()
