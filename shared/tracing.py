"""Tracing: one W3C trace per remittance, across processes, queues and workflows.

The mechanism calls the small functions here; nothing else imports OpenTelemetry.

Guarantees:
- Off by default, at the cost of the OpenTelemetry *API* only: without
  ``OTEL_TRACES_EXPORTER`` set (to ``otlp``, ``otlp_proto_http`` or ``console``)
  the SDK is never imported, every span is the API's non-recording span, and AWS
  clients and the HTTP app are not instrumented. ``OTEL_SDK_DISABLED=true`` wins.
- The context travels even when tracing is off: a non-recording span carries its
  parent's ``traceparent`` unchanged, and where there is none,
  :func:`traceparent` makes a new unsampled root, so a job item, an execution's
  input and an SNS message always have a valid ``traceparent`` to pass on.
- Configuration is the SDK's own: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
  ``..._TRACES_ENDPOINT``), ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER``
  and ``..._ARG``, ``OTEL_BSP_*``, ``OTEL_SERVICE_NAME`` and
  ``OTEL_RESOURCE_ATTRIBUTES`` (``service.name`` defaults to ``remitflow-<service>``).
- An AWS call is a child span only inside a span: a long poll with nothing to
  do makes no trace.

What a trace looks like: ``docs/tracing.md``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
"""Job attribute, execution input key, task message key, message attribute, HTTP header."""

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER = trace.get_tracer("remitflow")
_EXPORTERS = frozenset({"otlp", "otlp_proto_http", "console"})
_state: dict[str, Any] = {"provider": None}

__all__ = ["TRACEPARENT", "SpanKind", "configure_tracing", "enabled", "exemplar",
           "headers", "instrument_app", "instrument_client", "log_processor",
           "message_traceparent", "set_attributes", "shutdown_tracing", "span",
           "traceparent"]


def _wanted_exporters(environ: Mapping[str, str]) -> list[str]:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return [n for n in names if n in _EXPORTERS]


def configure_tracing(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Install the SDK's tracer provider when the ``OTEL_*`` variables ask for export.

    Called once by a process's entry point, before its AWS clients and HTTP app are
    built. Returns whether tracing is on.
    """
    env = os.environ if environ is None else environ
    wanted = _wanted_exporters(env)
    if not wanted or _state["provider"] is not None:
        return _state["provider"] is not None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"remitflow-{service}"}))
    provider = TracerProvider(resource=resource)
    for name in dict.fromkeys(wanted):
        if name == "console":
            exporter: Any = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _state["provider"] = provider
    return True


def enabled() -> bool:
    """Whether this process records and exports spans."""
    return _state["provider"] is not None


def shutdown_tracing() -> None:
    """Flush what is buffered (the entry point calls this on the way out)."""
    provider = _state["provider"]
    if provider is not None:
        provider.shutdown()


# --- context that travels ------------------------------------------------------------------

def _context(parent: str | None) -> otel_context.Context | None:
    if not parent:
        return None
    return _PROPAGATOR.extract({TRACEPARENT: parent})


def _span_context(value: str | None) -> SpanContext | None:
    ctx = _context(value)
    if ctx is None:
        return None
    found = trace.get_current_span(ctx).get_span_context()
    return found if found.is_valid else None


def _format(sc: SpanContext) -> str:
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"


def traceparent(*, fallback: str | None = None) -> str:
    """The current span's ``traceparent``; else ``fallback`` if valid; else a new root.

    The new root is unsampled (flags ``00``): it only gives the hops after this one
    something to carry.
    """
    current = trace.get_current_span().get_span_context()
    if current.is_valid:
        return _format(current)
    given = _span_context(fallback)
    if given is not None:
        return _format(given)
    return _format(SpanContext(trace_id=int.from_bytes(secrets.token_bytes(16), "big") or 1,
                               span_id=int.from_bytes(secrets.token_bytes(8), "big") or 1,
                               is_remote=True, trace_flags=TraceFlags(0)))


def headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the current span, for an outgoing request."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


def message_traceparent(message: Mapping[str, Any]) -> str | None:
    """The ``traceparent`` message attribute of an SQS message (raw SNS delivery too)."""
    attrs = message.get("MessageAttributes") or {}
    value = (attrs.get(TRACEPARENT) or {}).get("StringValue")
    return str(value) if value and _span_context(str(value)) is not None else None


# --- spans ----------------------------------------------------------------------------------

def _active() -> bool:
    return trace.get_current_span().get_span_context().is_valid


@contextmanager
def span(name: str, *, parent: str | None = None, new_trace: bool = False,
         links: Sequence[str | None] = (), kind: SpanKind = SpanKind.INTERNAL,
         **attributes: Any) -> Iterator[Span]:
    """A span made current for the block; an exception marks it as an error and goes on.

    Args:
        name: short and bounded (``intake``, ``start``, ``task``, ``publish``, ...).
        parent: a ``traceparent`` to continue, used only when no span is current
            (a sweeper re-drive's own span wins over the job's stored context).
        new_trace: start a new trace whatever is current or given.
        links: ``traceparent`` values this span follows from (the original trace of
            a re-driven job); invalid or missing ones are skipped.
        attributes: ``None`` values are left out.
    """
    if new_trace:
        ctx: otel_context.Context | None = otel_context.Context()
    elif parent and not _active():
        ctx = _context(parent)
    else:
        ctx = None
    span_links = [Link(sc) for sc in map(_span_context, links) if sc is not None]
    with _TRACER.start_as_current_span(
            name, context=ctx, kind=kind, links=span_links,
            attributes={k.replace("__", "."): v for k, v in attributes.items()
                        if v is not None}) as current:
        yield current


def set_attributes(**attributes: Any) -> None:
    """Add attributes (``outcome``, ``error``, ...) to the current span, if it records."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes({k.replace("__", "."): v for k, v in attributes.items()
                                if v is not None})


def exemplar() -> dict[str, str] | None:
    """``{"trace_id": ...}`` for a histogram observation made inside a sampled span."""
    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid or not sc.trace_flags.sampled:
        return None
    return {"trace_id": f"{sc.trace_id:032x}", "span_id": f"{sc.span_id:016x}"}


def log_processor(_logger: Any, _name: str,
                  event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: ``trace_id`` and ``span_id`` of the current span, if any."""
    sc = trace.get_current_span().get_span_context()
    if sc.is_valid:
        event_dict.setdefault("trace_id", f"{sc.trace_id:032x}")
        event_dict.setdefault("span_id", f"{sc.span_id:016x}")
    return event_dict


# --- instrumentation ------------------------------------------------------------------------

_SPAN_KEY = "remitflow_span"


def _before_call(event_name: str, context: dict[str, Any], **_kwargs: Any) -> None:
    if not _active():
        return
    _, service, operation = event_name.split(".", 2)
    context[_SPAN_KEY] = _TRACER.start_span(
        f"{service}.{operation}", kind=SpanKind.CLIENT,
        attributes={"rpc.system": "aws-api", "rpc.service": service, "rpc.method": operation})


def _after_call(context: dict[str, Any], http_response: Any = None, parsed: Any = None,
                **_: Any) -> None:
    started: Span | None = context.pop(_SPAN_KEY, None)
    if started is None:
        return
    status = int(getattr(http_response, "status_code", 0) or 0)
    started.set_attribute("http.response.status_code", status)
    meta = (parsed or {}).get("ResponseMetadata", {}) if isinstance(parsed, dict) else {}
    if meta.get("RequestId"):
        started.set_attribute("aws.request_id", str(meta["RequestId"]))
    if meta.get("RetryAttempts"):
        started.set_attribute("aws.retry_attempts", int(meta["RetryAttempts"]))
    if status >= 300:
        code = str((parsed or {}).get("Error", {}).get("Code", status))
        started.set_attribute("error.type", code)
        started.set_status(trace.Status(trace.StatusCode.ERROR, code))
    started.end()


def _after_call_error(context: dict[str, Any], exception: BaseException | None = None,
                      **_: Any) -> None:
    started: Span | None = context.pop(_SPAN_KEY, None)
    if started is None:
        return
    if exception is not None:
        started.record_exception(exception)
        started.set_attribute("error.type", type(exception).__name__)
    started.set_status(trace.Status(trace.StatusCode.ERROR))
    started.end()


def instrument_client(client: Any) -> None:
    """AWS calls as child spans, by botocore event hooks (works with aiobotocore).

    ``opentelemetry-instrumentation-botocore`` patches the synchronous
    ``BaseClient._make_api_call``, which aiobotocore's clients override, so its spans
    never appear; hooks are what both clients share. One span per API call
    (SDK retries inside it: ``aws.retry_attempts``).
    """
    if not enabled():
        return
    client.meta.events.register("before-call.*.*", _before_call)
    client.meta.events.register("after-call.*.*", _after_call)
    client.meta.events.register("after-call-error.*.*", _after_call_error)


def instrument_app(app: Any) -> None:
    """Server spans for the HTTP routes (not health, readiness or metrics)."""
    if not enabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
