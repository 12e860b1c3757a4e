"""A fault-injecting HTTP proxy in front of the emulator, for SES ``SendEmail`` only.

Every request is forwarded to the emulator unchanged, except SES ``SendEmail`` in
a fault mode: ``after`` forwards it (the e-mail is accepted) and then answers the
client 500 ``InternalFailure``, as SES does when it fails after accepting;
``before`` answers 500 without forwarding (nothing was sent). The client cannot
tell the two apart, which is the point: only an operator or SES's own events can.

``hold`` (a ``threading.Event``), when set on the proxy, keeps every forwarded
``SendEmail``'s answer back until the event is set: SES has accepted the e-mail
(and publishes its events) while the sender still waits for the answer, which
puts SES's events between ``SendEmail`` and the sender's record of it.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

Mode = Literal["pass", "after", "before"]
_ERROR = (b'<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><Error>'
          b"<Type>Receiver</Type><Code>InternalFailure</Code><Message>injected by the "
          b"test proxy</Message></Error><RequestId>faultproxy</RequestId></ErrorResponse>")


class SesFaultProxy:
    def __init__(self, upstream: str) -> None:
        split = urlsplit(upstream)
        self.upstream = (split.hostname or "127.0.0.1", split.port or 80)
        self.mode: Mode = "pass"
        self.send_emails = 0  # SendEmail requests seen
        self.forwarded = 0    # SendEmail requests the emulator received
        self.hold: threading.Event | None = None
        self.holding = 0      # SendEmail answers held back right now
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0") or 0))
                sending = b"Action=SendEmail" in body
                with proxy._lock:
                    mode = proxy.mode if sending else "pass"
                    proxy.send_emails += sending
                if mode == "before":
                    self._answer(500, {"content-type": "text/xml"}, _ERROR)
                    return
                status, headers, data = self._forward(body)
                if sending:
                    with proxy._lock:
                        proxy.forwarded += 1
                    hold = proxy.hold
                    if hold is not None:
                        with proxy._lock:
                            proxy.holding += 1
                        hold.wait(timeout=60)
                        with proxy._lock:
                            proxy.holding -= 1
                if mode == "after":
                    self._answer(500, {"content-type": "text/xml"}, _ERROR)
                    return
                self._answer(status, headers, data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

            def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("connection", "keep-alive")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    out = {k: v for k, v in resp.getheaders()
                           if k.lower() not in ("transfer-encoding", "connection",
                                                "content-length")}
                    return resp.status, out, data
                finally:
                    conn.close()

            def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler

    def start(self) -> SesFaultProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
