"""Unit tests: the partner message model, money, execution names, state transitions."""

from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources

import pytest

from services.enrichment.handler import parse_partner_message
from shared.domain.money import MoneyError, format_plain, minor_units, parse_amount
from shared.logs import redact_text, redaction_processor
from shared.pipeline.errors import TransientError
from shared.pipeline.faults import Faults
from shared.pipeline.intake import InvalidMessage
from shared.pipeline.jobs import (
    TRANSITIONS,
    InvalidTransition,
    Job,
    Status,
    execution_name,
    index_shard,
)

EXAMPLES = resources.files("shared.contracts").joinpath("examples")


@pytest.mark.parametrize("name", ["settled-usd-ach.json", "settled-eur-sepa-extra-fields.json",
                                  "settled-jpy-wire.json"])
def test_valid_examples_parse(name: str) -> None:
    body = EXAMPLES.joinpath(name).read_text()
    parsed = parse_partner_message(body)
    assert parsed.request_id == json.loads(body)["request_id"]
    assert parsed.payload == body


def test_extras_are_kept() -> None:
    parsed = parse_partner_message(EXAMPLES.joinpath(
        "settled-eur-sepa-extra-fields.json").read_text())
    assert json.loads(parsed.payload)["end_to_end_id"] == "E2E-5Q1X"


@pytest.mark.parametrize(("name", "reason", "words"), [
    ("invalid-float-amount.json", "schema", "decimal string"),
    ("invalid-jpy-fraction.json", "schema", "fraction digits"),
    ("invalid-truncated.txt", "invalid_json", "not JSON"),
])
def test_invalid_examples_say_why(name: str, reason: str, words: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_partner_message(EXAMPLES.joinpath(name).read_text())
    assert caught.value.reason == reason
    assert words in caught.value.detail


@pytest.mark.parametrize(("body", "reason"), [
    ("", "empty_body"), ("   ", "empty_body"), ("[1, 2]", "not_an_object"), ("42", "not_an_object"),
    ('{"request_id": "x"}', "schema"),
])
def test_malformed_bodies(body: str, reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_partner_message(body)
    assert caught.value.reason == reason


def _message(**changes: object) -> str:
    base = json.loads(EXAMPLES.joinpath("settled-usd-ach.json").read_text())
    base.update(changes)
    return json.dumps(base)


@pytest.mark.parametrize(("changes", "words"), [
    ({"amount": "-5.00"}, "amount"), ({"amount": "0"}, "positive"),
    ({"currency": "ZZZ"}, "unknown currency"), ({"amount": "1.005"}, "fraction digits"),
    ({"request_id": "x" * 129}, "request_id"), ({"payee_id": "P\x00"}, "control"),
    ({"invoice_ids": ["A", "A"]}, "unique"), ({"request_id": "1; DROP TABLE x"}, "request_id"),
    ({"occurred_at": "2026-11-24T14:03:11"}, "time zone"), ({"status": "PAID"}, "status"),
])
def test_field_rules(changes: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_partner_message(_message(**changes))
    assert words in caught.value.detail


def test_minor_units() -> None:
    assert (minor_units("JPY"), minor_units("USD"), minor_units("KWD")) == (0, 2, 3)
    assert format_plain(Decimal("1250.5"), "USD") == "1250.50"
    assert parse_amount("12.345", "KWD") == Decimal("12.345")
    with pytest.raises(MoneyError):
        parse_amount("100.5", "JPY")


def test_execution_names_are_deterministic_and_valid() -> None:
    assert execution_name("REQ-1", 1) == "REQ-1-a1"
    assert execution_name("REQ-1", 2) != execution_name("REQ-1", 1)
    long_id = "R" * 128
    name = execution_name(long_id, 3)
    assert len(name) <= 80 and name == execution_name(long_id, 3) and name.endswith("-a3")
    colon = execution_name("BANK:123", 1)
    assert ":" not in colon and colon != execution_name("BANK_123", 1)


def test_index_shard_is_stable() -> None:
    assert index_shard("REQ-1", 4) == index_shard("REQ-1", 4)
    assert {index_shard(f"R{i}", 4) for i in range(100)} == {"s0", "s1", "s2", "s3"}


def test_transitions_follow_the_design() -> None:
    assert Status.RUNNING in TRANSITIONS[Status.RECEIVED]
    assert TRANSITIONS[Status.COMPLETED] == frozenset()
    assert Status.RUNNING in TRANSITIONS[Status.FAILED]
    assert Status.FAILED not in TRANSITIONS[Status.RECEIVED]


async def test_store_refuses_forbidden_transition() -> None:
    from shared.pipeline.jobs import JobStore

    job = Job.from_raw({"request_id": "r", "status": "COMPLETED", "version": 3})
    store = JobStore(None, "t")  # type: ignore[arg-type]  # raises before any AWS call
    with pytest.raises(InvalidTransition):
        await store.transition(job, Status.RUNNING)


def test_faults() -> None:
    faults = Faults("transient-once:REQ-F-.*,transient-always:REQ-B-.*")
    with pytest.raises(TransientError):
        faults.check("REQ-F-1", 1)
    faults.check("REQ-F-1", 2)
    with pytest.raises(TransientError):
        faults.check("REQ-B-1", 5)
    faults.check("REQ-OK", 1)
    with pytest.raises(ValueError, match="KIND:REGEX"):
        Faults("sometimes:.*")


def test_redaction() -> None:
    assert "whsec_[redacted]" in redact_text("secret whsec_abc123==")
    assert redact_text("acct 123456789012") == "acct …9012"
    assert redact_text("mail ap@ada-books.example") == "mail …@ada-books.example"
    event = redaction_processor(None, "info", {"request_id": "REQ-20261125102420-1",
                                               "webhook_secret": "whsec_x",
                                               "detail": "Bearer abc.def"})
    assert event == {"request_id": "REQ-20261125102420-1", "webhook_secret": "[redacted]",
                     "detail": "Bearer [redacted]"}


def test_rate_limiter_bucket() -> None:
    from shared.api import RateLimiter

    now = [0.0]
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.allow("a") == 0.5
    assert limiter.allow("b") == 0.0, "buckets are per client"
    now[0] = 0.5
    assert limiter.allow("a") == 0.0, "refilled at rate_per_s"


async def test_api_answers_429_with_retry_after() -> None:
    from fastapi import APIRouter
    from httpx import ASGITransport, AsyncClient

    from shared.api import ApiAuth, Heartbeat, RateLimiter, create_app

    router = APIRouter()

    @router.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    async def ready() -> dict[str, object]:
        return {}

    app = create_app(service="t", readiness=ready, heartbeat=Heartbeat(), routers=[router],
                     auth=ApiAuth(disabled=True), limiter=RateLimiter(rate_per_s=0.1, burst=2))
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http:
        codes = [(await http.get("/v1/ping")).status_code for _ in range(3)]
        limited = await http.get("/v1/ping")
        metrics = await http.get("/metrics")
    assert codes == [200, 200, 429]
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert metrics.status_code == 200, "/metrics is never limited"


def test_invalid_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import SettingsError, load_settings

    monkeypatch.setenv("REMITFLOW_MAX_IN_FLIGHT", "abc")
    monkeypatch.setenv("REMITFLOW_LOG_LEVEL", "LOUD")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "REMITFLOW_MAX_IN_FLIGHT" in message and "REMITFLOW_LOG_LEVEL" in message
