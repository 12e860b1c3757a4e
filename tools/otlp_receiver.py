"""A small OTLP/HTTP trace receiver: what the services export, decoded, in memory.

It accepts ``POST /v1/traces`` (``application/x-protobuf``, the exporter's default),
decodes each ``ExportTraceServiceRequest`` with ``opentelemetry-proto`` and keeps one
flat :class:`ReceivedSpan` per span, with its resource's ``service.name``. Tests read
``spans``; ``tools/tracebench.py`` uses it as the collector stub (``decode=False``
keeps only byte and request counts, so the stub costs the services nothing extra).
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any] = field(default_factory=dict)
    links: tuple[tuple[str, str], ...] = ()

    @property
    def ids(self) -> tuple[str, str]:
        """(trace id, span id): what a ``traceparent`` naming this span carries (its flags
        are not in the OTLP span)."""
        return self.trace_id, self.span_id


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def decode(body: bytes) -> list[ReceivedSpan]:
    """An ``ExportTraceServiceRequest`` → flat spans."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out: list[ReceivedSpan] = []
    for rs in request.resource_spans:
        resource = {a.key: _value(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(ReceivedSpan(
                    service=str(resource.get("service.name", "")), name=s.name,
                    trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                    parent_id=s.parent_span_id.hex(), kind=int(s.kind),
                    attributes={a.key: _value(a.value) for a in s.attributes},
                    links=tuple((link.trace_id.hex(), link.span_id.hex())
                                for link in s.links)))
    return out


class OtlpReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, decode: bool = True) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.bytes = 0
        self.decode = decode
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self.port = int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """For ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter appends ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                spans = decode(body) if receiver.decode else []
                with receiver._lock:
                    receiver.requests += 1
                    receiver.bytes += len(body)
                    receiver.spans.extend(spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def start(self) -> OtlpReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
