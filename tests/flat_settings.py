"""Settings for tests: one model valid for every service, set with the flat names the
tests write (``stream_poll_interval_s``, ``webhook_allow_private``); an unknown name
raises, never silently ignored."""

from __future__ import annotations

from typing import Any, TypeVar

from services.enrichment.settings import EnrichmentSettings
from services.notification.settings import NotificationSettings
from services.sweeper.settings import SweeperSettings
from shared.settings import Settings, concerns, variables
from tools.stack import KINDS

S = TypeVar("S", bound=Settings)


class AllSettings(NotificationSettings, EnrichmentSettings, SweeperSettings):
    """Valid for every service: what a test builds any service with."""


def _flat_names() -> dict[str, tuple[str | None, str]]:
    """The settings' flat names (a variable without ``REMITFLOW_``, lower case, as the
    tests write them: ``stream_poll_interval_s``) → (the concern field or None, field)."""
    owner = {kind: name for name, kind in concerns(AllSettings).items()}
    out: dict[str, tuple[str | None, str]] = {}
    for var, (model, field) in variables(AllSettings).items():
        if model in owner:
            out[var.removeprefix("REMITFLOW_").lower()] = (owner[model], field)
        else:
            out[field] = (None, field)
    return out


FLAT = _flat_names()


def _split(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for name, value in overrides.items():
        if name not in FLAT:
            raise TypeError(f"no setting {name!r}")
        concern, field = FLAT[name]
        if concern is None:
            top[field] = value
        else:
            nested.setdefault(concern, {})[field] = value
    return top, nested


def test_settings(prefix: str, **overrides: Any) -> AllSettings:
    """Settings for a test (flat names; an unknown one raises): fast timings, and each
    kind retried after 1 s then 2 s (3 attempts)."""
    schedules = {key: "1s,2s" for kind in KINDS for key in (kind.name, *kind.schedules)}
    values: dict[str, Any] = {
        "prefix": prefix, "receive_wait_s": 1, "stream_poll_interval_s": 0.2,
        "stream_idle_max_s": 0.5, "lease_ttl_s": 5, "retry_schedules": schedules,
        "retry_max_attempts": 3, "task_heartbeat_s": 5,
        "sweeper_interval_s": 1, "webhook_allow_private": True, "log_format": "json",
        **overrides}
    top, nested = _split(values)
    parts: dict[str, Any] = {name: concerns(AllSettings)[name](**fields)
                             for name, fields in nested.items()}
    return AllSettings(**top, **parts)


def replace_settings(settings: S, **overrides: Any) -> S:
    """``settings`` with ``overrides`` (flat names, as :func:`test_settings`; validated)."""
    top, nested = _split(overrides)
    parts = {name: type(getattr(settings, name)).model_validate(
        {**getattr(settings, name).model_dump(), **fields})
        for name, fields in nested.items()}
    return type(settings).model_validate({**dict(settings), **top, **parts})
