"""Retry schedules: parsing, which schedule a job gets, dev time, and due-only sweeps."""

from __future__ import annotations

import time

import pytest

from services.notification.kind import NOTIFICATION
from services.sweeper.service import build_sweeper
from shared.pipeline.assemble import retry_policy
from shared.pipeline.jobs import Job, Status
from shared.schedule import format_schedule, parse_schedule
from shared.settings import Settings, SettingsError, load_settings
from shared.settings.concerns import RetrySettings
from tests.helpers import Env
from tools.dev import dev_environment
from tools.stack import KINDS

SVIX = "5s,5m,30m,2h,5h,10h,10h"


def job(channel: str | None, attempt: int = 1) -> Job:
    raw = {"request_id": "R", "status": "RETRY_PENDING", "version": 1, "attempt": attempt}
    return Job.from_raw({**raw, "channel": channel} if channel else raw)


def test_parse_and_format_schedule() -> None:
    assert parse_schedule("0,5s,5m,30m,2h, 1d, 90").delays == (0, 5, 300, 1800, 7200, 86400, 90)
    assert format_schedule(parse_schedule(SVIX)) == SVIX
    assert parse_schedule("").delays == ()
    with pytest.raises(ValueError, match="'5 minutes'"):
        parse_schedule("5s,5 minutes")


def test_notification_schedules_by_channel() -> None:
    policy = retry_policy(Settings(), NOTIFICATION)
    assert policy.schedule_for(job("webhook")) == parse_schedule(SVIX)
    assert policy.max_attempts_for(job("webhook")) == 8          # immediately + 7 retries
    assert policy.max_attempts_for(job("email")) == 5
    assert policy.delay_s(3, job("webhook")) == 1800
    assert policy.delay_s(99, job("webhook")) == 36000          # past the end: the last delay
    now = 1_000_000.0
    assert policy.next_attempt_at(6, now, job("webhook")) == now + 10 * 3600


def test_schedule_variables_win_and_name_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMITFLOW_RETRY_SCHEDULE_WEBHOOK", "0,5s,5m")
    monkeypatch.setenv("REMITFLOW_RETRY_SCHEDULE_NOTIFICATION", "1m")
    policy = retry_policy(Settings(), NOTIFICATION)
    assert policy.schedule_for(job("webhook")).delays == (0, 5, 300)
    assert policy.schedule_for(job(None)).delays == (60,)
    monkeypatch.setenv("REMITFLOW_RETRY_SCHEDULE_EMAIL", "5 mins")
    with pytest.raises(SettingsError, match="REMITFLOW_RETRY_SCHEDULE_EMAIL"):
        load_settings()


def test_max_attempts_alone_resizes_the_kind_schedule() -> None:
    policy = retry_policy(Settings(retry=RetrySettings(max_attempts=10)), NOTIFICATION)
    assert policy.schedule_for(job("webhook")) == parse_schedule(SVIX + ",10h,10h")
    assert retry_policy(Settings(retry=RetrySettings(max_attempts=2)), NOTIFICATION).schedule_for(
        job("webhook")).delays == (5,)


def test_dev_compresses_time_and_the_user_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    user = {"REMITFLOW_RETRY_MAX_ATTEMPTS": "9", "REMITFLOW_SWEEPER_INTERVAL_S": "7",
            "REMITFLOW_FAULTS": ""}
    env = dev_environment(user, "http://127.0.0.1:4566",
                          {"REMITFLOW_FAULTS": "transient-once:X"})
    assert env["REMITFLOW_RETRY_MAX_ATTEMPTS"] == "9"
    assert env["REMITFLOW_SWEEPER_INTERVAL_S"] == "7"
    assert env["REMITFLOW_FAULTS"] == ""                 # even an empty value wins
    assert env["REMITFLOW_DEV_TIME_SCALE"] == "60"
    for key, value in env.items():
        if key.startswith("REMITFLOW_"):
            monkeypatch.setenv(key, value)
    policy = retry_policy(Settings(), NOTIFICATION)      # what a service builds from it
    assert policy.max_attempts_for(job("webhook")) == 9
    assert policy.delay_s(2, job("webhook")) == 5.0      # 5 min in 5 s


async def test_a_retry_due_in_ten_hours_is_not_read_before(env: Env) -> None:
    """The sweeper queries the retry index up to now: a far-off retry costs no read."""
    store = env.store("notifications")
    created = await store.create("REQ-TEN-HOURS", "{}", "x", {"channel": "webhook"})
    assert created is not None
    running = await store.transition(created, Status.RUNNING, set_={"attempt": 6})
    now = time.time()
    due = retry_policy(Settings(), NOTIFICATION).next_attempt_at(6, now, running)
    assert due >= now + 10 * 3600
    await store.transition(running, Status.RETRY_PENDING, sort_value=due)
    sweeper = await build_sweeper(env.settings, env.clients, KINDS)
    for at in (now, now + 5 * 3600, due - 1):
        report = (await sweeper.sweep_once(force=True, now=at)).tables["notifications"]
        assert (report.scanned_count, report.count, report.redriven) == (0, 0, 0)
        assert report.backlog["retry"] == 1
    report = (await sweeper.sweep_once(force=True, now=due)).tables["notifications"]
    assert (report.count, report.redriven + report.failed) == (1, 1)
