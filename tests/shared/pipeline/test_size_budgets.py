"""Size budgets end to end: what intake accepts fits everywhere downstream.

For each budget that can bind — the task output (quote-heavy and non-ASCII content,
escaped twice on the way) and the job item (payload plus the advice stored beside
it) — the largest message intake accepts is found with the real parser, sent, and
must end ``COMPLETED`` with a published advice within AWS's limits; one byte more is
refused at intake with reason ``too_large`` naming the stage and its limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from services.enrichment.handler import parse_partner_message
from services.enrichment.service import build
from shared.pipeline.budgets import JOB_ITEM, TASK_OUTPUT, Budget, escaped_size, utf8_size
from shared.pipeline.intake import budget_problem
from tests.helpers import Env, eventually, job_in, running
from tools.demo import generate_messages

pytestmark = pytest.mark.own_stack("runs the enrichment workers over the whole intake queue")

SQS_LIMIT = 256 * 1024
Make = Callable[[int], str]


def _body(request_id: str, ensure_ascii: bool = True, **extra: Any) -> str:
    base = dict(generate_messages(1, prefix=request_id)[0], **extra)
    return json.dumps(base, ensure_ascii=ensure_ascii)


def _refusal(body: str, allowed: frozenset[str]) -> str | None:
    return budget_problem(parse_partner_message(body, extra_fields=allowed))


def largest(make: Make, allowed: frozenset[str], hi: int = 400_000) -> int:
    """The largest n whose message intake accepts (binary search on the real parser)."""
    lo = 0
    assert _refusal(make(lo), allowed) is None and _refusal(make(hi), allowed)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _refusal(make(mid), allowed) is None else (lo, mid)
    return lo


CASES: dict[str, tuple[Make, Budget]] = {
    "quote-heavy extra (task output)": (
        lambda n: _body("REQ-SIZE-QUOTE", end_to_end_id='"' * n), TASK_OUTPUT),
    "non-ASCII extra (task output)": (
        lambda n: _body("REQ-SIZE-UTF8", ensure_ascii=False, end_to_end_id="é" * n),
        TASK_OUTPUT),
    "payload and advice (job item)": (
        lambda n: _body("REQ-SIZE-ITEM", end_to_end_id="a" * 150_000, blob="b" * n), JOB_ITEM),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_at_and_over_each_budget(env: Env, case: str) -> None:
    make, budget = CASES[case]
    allowed = env.settings.advice_extras_allowed
    n = largest(make, allowed)
    at, over = make(n), make(n + 1)
    detail = _refusal(over, allowed)
    assert detail is not None and budget.stage in detail and str(budget.limit) in detail
    assert utf8_size(at) <= SQS_LIMIT, "the case must be sendable through SQS"
    request_id = json.loads(at)["request_id"]
    async with running(env, build):
        await env.send(at, over)
        job = await job_in(env.store(), request_id, "COMPLETED", "FAILED", "REJECTED",
                           timeout_s=60)
        dlq = env.names.dlq(env.names.remittance_events)
        dead = await eventually(lambda: env.drain(dlq, wait_s=0), what="the over one in DLQ")
    assert job.status == "COMPLETED", job.public()
    advice = job.raw["advice"]
    assert escaped_size(advice) + 1024 <= 256 * 1024, "task output within SendTaskSuccess"
    assert utf8_size(advice) + utf8_size(job.raw["payload"]) + 2048 <= 400 * 1024
    attrs = dead[0]["MessageAttributes"]
    assert attrs["remitflow.reason"]["StringValue"] == "too_large"
    assert str(budget.limit) in attrs["remitflow.detail"]["StringValue"]
