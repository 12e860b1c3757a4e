"""The settings models: a small core of concern models, one model per service, the
variables' names unchanged, every invalid one named (docs/configuration.md)."""

from __future__ import annotations

import pytest

from services.notification.settings import NotificationSettings
from services.sweeper.settings import SweeperSettings
from shared.schedule import Schedule
from shared.settings import Settings, SettingsError, concerns, load_settings, narrow, variables
from tests.helpers import replace_settings
from tests.helpers import test_settings as settings_for
from tools.stack import SERVICES

CORE_MAX_FIELDS = 25


def test_the_core_holds_at_most_25_fields_and_its_concerns_are_models_of_their_own() -> None:
    assert len(Settings.model_fields) <= CORE_MAX_FIELDS
    for concern in concerns(Settings).values():
        assert not issubclass(concern, Settings), "a concern is composed, not inherited"
        assert set(concern.model_fields).isdisjoint(Settings.model_fields)


def test_concerns_read_the_variables_they_always_had(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMITFLOW_STREAM_POLL_INTERVAL_S", "0.5")
    monkeypatch.setenv("REMITFLOW_TASK_HEARTBEAT_S", "7")
    monkeypatch.setenv("REMITFLOW_INTAKE_RETRY_CAP_S", "30")
    monkeypatch.setenv("REMITFLOW_FAULTS", "transient-once:X")
    monkeypatch.setenv("REMITFLOW_FAULT_AFTER", "3")
    monkeypatch.setenv("REMITFLOW_RETENTION_DAYS", "2,notification=1")
    monkeypatch.setenv("REMITFLOW_API_BURST", "9")
    settings = load_settings()
    assert settings.stream.poll_interval_s == 0.5
    assert settings.task.heartbeat_s == 7 and settings.task.visibility_s == 31
    assert settings.intake.retry_cap_s == 30
    assert (settings.faults.plan, settings.faults.after) == ("transient-once:X", 3)
    assert settings.lifecycle.retention_s("notification") == 86400
    assert settings.api.burst == 9


def test_each_service_validates_its_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMITFLOW_WEBHOOK_TIMEOUT_S", "-1")
    load_settings(SweeperSettings)     # not the sweeper's variable
    with pytest.raises(SettingsError, match="REMITFLOW_WEBHOOK_TIMEOUT_S"):
        load_settings(NotificationSettings)
    declared = {s.name: s.settings for s in SERVICES}
    assert declared["notification"] is NotificationSettings
    assert all(issubclass(model, Settings) for model in declared.values())


def test_a_service_model_is_built_from_the_core_and_its_own_variables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMITFLOW_SENDER_EMAIL", "ops@example.org")
    core = load_settings(prefix="narrowed")
    own = narrow(core, NotificationSettings)
    assert (own.prefix, own.sender_email) == ("narrowed", "ops@example.org")
    assert narrow(own, NotificationSettings) is own


def test_every_invalid_variable_is_named_nested_ones_too(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMITFLOW_STREAM_POLL_INTERVAL_S", "soon")
    monkeypatch.setenv("REMITFLOW_API_AUTH", "maybe")
    monkeypatch.setenv("REMITFLOW_MAX_IN_FLIGHT", "0")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "invalid setting REMITFLOW_API_AUTH", "invalid setting REMITFLOW_STREAM_POLL_INTERVAL_S",
        "invalid setting REMITFLOW_MAX_IN_FLIGHT"]


@pytest.mark.parametrize("name", ["REMITFLOW_RETRY_BACKOFF_BASE_S",
                                  "REMITFLOW_RETRY_BACKOFF_CAP_S"])
def test_the_removed_exponential_mode_is_refused_naming_its_replacement(
        monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "30")
    with pytest.raises(SettingsError, match=f"{name}.*REMITFLOW_RETRY_SCHEDULE_<KEY>"):
        load_settings()


def test_a_service_adds_only_variables_no_other_model_reads() -> None:
    core = set(variables(Settings))
    owner: dict[str, str] = {}
    for service in SERVICES:
        for name in set(variables(service.settings)) - core:
            assert owner.setdefault(name, service.name) == service.name, name


def test_test_settings_take_flat_names_and_refuse_unknown_ones() -> None:
    settings = settings_for("p", stream_poll_interval_s=0.3, webhook_allow_private=False)
    assert settings.stream.poll_interval_s == 0.3 and not settings.webhook_allow_private
    assert replace_settings(settings, task_backlog_max=2).task.backlog_max == 2
    with pytest.raises(TypeError, match="stream_poll_interval"):
        settings_for("p", stream_poll_interval=0.3)
    with pytest.raises(TypeError):
        replace_settings(settings, retry_backoff_base_s=1)


def test_one_schedule_type_for_every_back_off() -> None:
    doubling = Schedule.exponential(2, 900, jitter=False)
    assert doubling.delays[:3] == (2, 4, 8) and doubling.delays[-1] == 900
    assert doubling.delay(99) == 900 and Schedule().delay(1) == 0
    assert Schedule((5, 300)).sized(4).delays == (5, 300, 300)
    assert Schedule((5, 300)).sized(2).delays == (5,)
    jittered = Schedule.exponential(8, 8)
    assert all(4 <= jittered.delay(1) <= 8 for _ in range(50))
