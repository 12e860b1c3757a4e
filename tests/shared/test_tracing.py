"""One remittance, one trace: the three services as real processes export OTLP/HTTP to an
in-test receiver, and the spans form one tree from the partner's message to the payee's
webhook request (``docs/tracing.md``)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from shared import tracing
from tests.helpers import (
    WEBHOOK_SECRET,
    Env,
    eventually,
    example,
    job_in,
    point_webhook_payee_at,
    retrying,
    service_process,
)
from tests.pipeline_procs import all_ready, services
from tools.otlp_receiver import OtlpReceiver, ReceivedSpan
from tools.webhook_receiver import Receiver

pytestmark = pytest.mark.own_stack("runs every service over the whole queues and reads their spans")

# What one remittance must show, per process: (service, span name).
EXPECTED = {("remitflow-enrichment", n) for n in ("intake", "start", "task", "handle",
                                                   "publish")} | \
           {("remitflow-notification", n) for n in ("intake", "start", "task", "handle",
                                                     "rule", "render", "deliver")}


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def payee() -> Iterator[Receiver]:
    r = Receiver(WEBHOOK_SECRET, port=0).start()
    yield r
    r.stop()


def _ids(traceparent: str) -> tuple[str, str]:
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


def _one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, f"{service} {name}: {found}"
    return found[0]


async def test_one_remittance_is_one_trace_across_processes(
        env: Env, otlp: OtlpReceiver, payee: Receiver) -> None:
    await point_webhook_payee_at(env, payee)
    partner_trace, partner_span = secrets.token_hex(16), secrets.token_hex(8)
    # The partner asks for no sampling (flags 00): we decide, and sample (always_on).
    given = f"00-{partner_trace}-{partner_span}-00"
    with services(env.settings.prefix, OTEL_TRACES_EXPORTER="otlp",
                  OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint, OTEL_BSP_SCHEDULE_DELAY="100",
                  REMITFLOW_WEBHOOK_ALLOW_PRIVATE="true",
                  REMITFLOW_API_TOKEN="tracing-test-token-0123456789") as urls:
        await all_ready(urls)
        await env.clients.sqs.send_message(
            QueueUrl=await env.queue_url(env.names.remittance_events),
            MessageBody=example("settled-jpy-wire.json"),
            MessageAttributes={"traceparent": {"DataType": "String", "StringValue": given}})
        job = await job_in(env.store("notifications"), "REQ-2026-000003", "SENT", timeout_s=60)

        async def ours() -> str | None:  # our trace: the intake span that links the partner's
            return next((s.trace_id for s in otlp.snapshot()
                         if s.name == "intake" and s.links == ((partner_trace, partner_span),)),
                        None)

        trace_id = await eventually(ours, timeout_s=20, what="the intake span")

        async def complete() -> list[ReceivedSpan] | None:
            spans = [s for s in otlp.snapshot() if s.trace_id == trace_id]
            return spans if {(s.service, s.name) for s in spans} >= EXPECTED else None

        spans = await eventually(complete, timeout_s=20, what="every stage's span exported")
        async with httpx.AsyncClient(timeout=5) as http:
            om = (await http.get(f"{urls['notification']}/metrics",
                                 headers={"accept": "application/openmetrics-text"})).text
            plain = (await http.get(f"{urls['notification']}/metrics")).text
    # Latency histograms carry the trace as an exemplar (OpenMetrics only).
    assert 'remitflow_handler_duration_seconds_bucket' in om and f'trace_id="{trace_id}"' in om
    assert "trace_id" not in plain

    assert {s.trace_id for s in otlp.snapshot() if s.name in {"intake", "start", "task"}} \
        == {trace_id}, "one remittance, one trace"
    e, n = "remitflow-enrichment", "remitflow-notification"
    intake, start, task = _one(spans, e, "intake"), _one(spans, e, "start"), _one(spans, e, "task")
    # A new trace of ours, linked to the partner's context, which stays an attribute.
    assert trace_id != partner_trace and intake.parent_id == ""
    assert intake.attributes["partner.traceparent"] == given
    assert not [s for s in otlp.snapshot() if s.trace_id == partner_trace]
    assert intake.attributes["request_id"] == "REQ-2026-000003"
    assert intake.attributes["outcome"] == "stored"
    assert start.parent_id == intake.span_id and start.attributes["outcome"] == "started"
    assert task.parent_id == start.span_id and task.attributes["outcome"] == "success"
    assert task.attributes["attempt"] == 1
    assert _one(spans, e, "handle").parent_id == task.span_id
    handle_e = _one(spans, e, "handle")
    publish = _one(spans, e, "publish")
    assert publish.parent_id == handle_e.span_id  # the task worker publishes, then answers
    n_intake = _one(spans, n, "intake")
    assert n_intake.parent_id == publish.span_id
    n_start, n_task = _one(spans, n, "start"), _one(spans, n, "task")
    assert n_start.parent_id == n_intake.span_id and n_task.parent_id == n_start.span_id
    handle = _one(spans, n, "handle")
    assert handle.parent_id == n_task.span_id
    deliver = _one(spans, n, "deliver")
    assert {_one(spans, n, x).parent_id for x in ("rule", "render", "deliver")} \
        == {handle.span_id}
    assert deliver.attributes["channel"] == "webhook"
    assert deliver.attributes["outcome"] == "delivered"
    # AWS calls are child spans of the stage that made them.
    assert any(s.parent_id == start.span_id and s.name.endswith(".StartExecution")
               for s in spans)
    assert any(s.parent_id == intake.span_id and s.name.endswith(".PutItem") for s in spans)
    # The job items carry the context; the payee got the delivery span's traceparent.
    enriched = await env.store().get("REQ-2026-000003")
    assert enriched is not None
    assert _ids(enriched.raw["traceparent"]) == intake.ids
    assert _ids(job.raw["traceparent"]) == n_intake.ids
    (got,) = payee.received
    assert _ids(got["traceparent"]) == deliver.ids  # ours: the partner's id never reaches payees


async def test_sweeper_redrive_starts_a_new_trace_linked_to_the_original(
        env: Env, otlp: OtlpReceiver) -> None:
    store = env.store()
    job = await retrying(store, "REQ-TRACE-REDRIVE", payload=example("settled-usd-ach.json"))
    original = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    await store.update(job, {"traceparent": original})
    with service_process(env, "sweeper", OTEL_TRACES_EXPORTER="otlp",
                         OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
                         OTEL_BSP_SCHEDULE_DELAY="100", REMITFLOW_SWEEPER_INTERVAL_S="1"):
        async def redriven() -> list[ReceivedSpan] | None:
            spans = otlp.snapshot()
            return spans if any(s.name == "start" for s in spans) else None

        spans = await eventually(redriven, timeout_s=30, what="the re-drive's spans")
    redrive = _one(spans, "remitflow-sweeper", "redrive")
    start = _one(spans, "remitflow-sweeper", "start")
    _, trace_id, span_id, _ = original.split("-")
    assert redrive.trace_id != trace_id and redrive.parent_id == ""  # a new trace ...
    assert redrive.links == ((trace_id, span_id),)                   # ... linked to the first
    assert start.parent_id == redrive.span_id and start.attributes["attempt"] == 2
    # the execution input carries the new trace, so the re-drive's work joins it
    (execution,) = await env.executions(env.names.enrichment_sm)
    desc = await env.clients.sfn.describe_execution(executionArn=execution["executionArn"])
    assert _ids(json.loads(desc["input"])["traceparent"]) == start.ids
    running = await store.get("REQ-TRACE-REDRIVE")
    assert running is not None and running.attempt == 2
    assert running.raw["traceparent"] == original  # the job keeps its first context


async def test_tracing_is_off_without_otel_variables() -> None:
    assert not tracing.configure_tracing("test", environ={})
    assert not tracing.configure_tracing("test", environ={"OTEL_TRACES_EXPORTER": "otlp",
                                                          "OTEL_SDK_DISABLED": "true"})
    assert not tracing.enabled()


async def test_context_travels_with_tracing_off() -> None:
    """No SDK: a given traceparent passes through unchanged; without one, a new unsampled
    root is made so the next hop has something to carry."""
    given = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    with tracing.span("intake", parent=given):
        assert tracing.traceparent() == given
        assert tracing.headers() == {"traceparent": given}
    fresh = tracing.traceparent()
    version, trace_id, span_id, flags = fresh.split("-")
    assert (version, flags, len(trace_id), len(span_id)) == ("00", "00", 32, 16)
    assert tracing.traceparent(fallback=given) == given
    assert tracing.message_traceparent(
        {"MessageAttributes": {"traceparent": {"StringValue": "garbage"}}}) is None


async def test_redrive_starts_a_new_trace_linked_to_the_original() -> None:
    original = "00-" + "c" * 32 + "-" + "d" * 16 + "-01"
    with tracing.span("redrive", new_trace=True, links=[original, None]):
        # off: no recording span, so the job's own context is what travels
        assert tracing.traceparent(fallback=original) == original
    assert json.loads(json.dumps({"traceparent": original}))["traceparent"] == original


LOG_SCRIPT = """
import logging, structlog
from shared.logs import configure_logging
from shared.tracing import span
configure_logging("INFO", "json", service="t")
with span("intake", parent="00-" + "e" * 32 + "-" + "f" * 16 + "-01"):
    structlog.get_logger("ours").info("inside")
    logging.getLogger("uvicorn.error").warning("stdlib inside")
structlog.get_logger("ours").info("outside")
"""


def test_logs_carry_trace_and_span_ids() -> None:
    proc = subprocess.run([sys.executable, "-c", LOG_SCRIPT], capture_output=True, timeout=60)
    lines = [json.loads(line) for line in proc.stderr.decode().splitlines()]
    by_event = {line["event"]: line for line in lines}
    for event in ("inside", "log.uvicorn.error"):
        assert by_event[event]["trace_id"] == "e" * 32
        assert by_event[event]["span_id"] == "f" * 16
    assert "trace_id" not in by_event["outside"]
