"""moto's request routing without re-reading the disk and the class on every request.

Two steps of moto's server run for **every request** and always give the same answer:

- finding the backend for a host lists moto's package directory and ``stat``s every
  entry in it (``moto.backends.list_of_moto_modules``, from
  ``DomainDispatcherApplication.get_backend_for_host``);
- setting up a response lists every function of the response class with
  ``inspect.getmembers`` (``moto.core.utils.method_names_from_class``, from
  ``BaseResponse.setup_class``).

Measured with ``py-spy`` on a stream of ``GetItem`` calls: about 11 % of the
emulator's busy time (``docs/emulator.md``). The installed package and the classes do
not change while the server runs (every patch of ours is in place before it
starts), so each answer is computed once and kept. Tied to the pinned moto like the
Step Functions caches (:mod:`shared.aws.emulator_sfn`).
"""

from __future__ import annotations

import functools
import io
import socket
from collections.abc import Callable, Iterable
from typing import Any

from shared.aws.emulator_patch import check_version, once, require

# http.server writes a response unbuffered: the status line and headers in one
# ``sendall``, the body in another, each a loopback round of the kernel's TCP path on
# both sides. Buffered, werkzeug's flush after the body sends them as one.
RESPONSE_BUFFER = 64 * 1024


@once
def install() -> None:
    """Put the two caches in place (idempotent); ``EmulatorPatchError`` if moto moved."""
    check_version()
    from moto import backends
    from moto.core import responses

    listing: Callable[[], Iterable[str]] = require(backends, "list_of_moto_modules")
    names: Callable[[object], list[str]] = require(responses, "method_names_from_class")
    modules = tuple(listing())

    def list_of_moto_modules() -> Iterable[str]:
        return modules           # callers test membership or iterate: a tuple does both

    backends.list_of_moto_modules = list_of_moto_modules
    responses.method_names_from_class = functools.lru_cache(maxsize=256)(names)  # type: ignore[attr-defined]


def request_handler() -> type[Any]:
    """moto's request handler, keeping the connection open between requests.

    werkzeug's development server answers every request with ``Connection: close``,
    because ``http.server`` cannot skip a request body the application left unread
    before it reads the next request line (and after answering, it drains the socket,
    which on a kept connection would swallow the next request). So every AWS call
    paid a new TCP connection on both sides and a new server thread. This handler
    reads a request's whole body (``Content-Length``) before the application runs and
    gives werkzeug's drain nothing to read, so the next request line is where
    ``http.server`` looks for it, and lets HTTP/1.1 keep the connection. A chunked
    body, and every error werkzeug or ``http.server`` answers on their own, still
    close it.
    """
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class KeepAliveHandler(MotoRequestHandler):
        _body_read = False
        wbufsize = RESPONSE_BUFFER

        def setup(self) -> None:
            super().setup()
            # A response larger than the buffer leaves in more than one write: without
            # this, Nagle's algorithm holds the second until the client's delayed ACK
            # (~40 ms per response).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def handle_one_request(self) -> None:
            self._body_read, socket_file = False, self.rfile
            try:
                super().handle_one_request()
            finally:
                self.rfile = socket_file   # the next request line is read from the socket

        def make_environ(self) -> dict[str, Any]:
            # A client that sent ``Expect: 100-continue`` (S3 uploads) waits for the
            # interim answer before it sends the body we are about to read: it must
            # leave the buffer now, or both sides wait on each other.
            self.wfile.flush()
            environ: dict[str, Any] = super().make_environ()
            if environ.get("wsgi.input_terminated"):      # chunked: werkzeug reads it
                return environ
            length = int(self.headers.get("Content-Length") or 0)
            environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length else b"")
            # werkzeug drains "what is left" of the request after answering; with the
            # body read, what is on the socket is the next request: it must read nothing.
            self.rfile = io.BytesIO()
            self._body_read = True
            return environ

        def send_header(self, keyword: str, value: str) -> None:
            if self._body_read and keyword.lower() == "connection" \
                    and value.lower() == "close":
                return              # the body was read in full: the next request may follow
            super().send_header(keyword, value)

    return KeepAliveHandler
