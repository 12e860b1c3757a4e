"""The core model's concerns: small settings models, one per concern of the mechanism.

Each reads its own variables (its ``env_prefix`` plus the field's name, so the names
are those of docs/configuration.md) and is one field of the core model
(:class:`shared.settings.Settings`): ``settings.stream.poll_interval_s`` reads
``REMITFLOW_STREAM_POLL_INTERVAL_S``.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.schedule import Schedule, parse_schedule
from shared.settings.tokens import GENERATE_HINT, token_problem

LEGACY_RETRY = ("REMITFLOW_RETRY_BACKOFF_BASE_S", "REMITFLOW_RETRY_BACKOFF_CAP_S")


class SettingsError(SystemExit):
    """Raised at start-up for an invalid setting; the message names the variable."""


def _config(env_prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=env_prefix, extra="forbid")


class ApiSettings(BaseSettings):
    """``/v1``: its token, rate limit and the proxies believed (``REMITFLOW_API_*``)."""

    model_config = _config("REMITFLOW_API_")

    token: SecretStr | None = None
    auth: Literal["required", "disabled"] = Field(
        default="required", description="'disabled' serves /v1 without a token (dev only); "
                                        "otherwise a service refuses to start without one")
    trusted_proxies: str = Field(
        default="", description="comma-separated CIDRs whose X-Forwarded-For is believed "
                                "(the rate limiter's client address)")
    max_clients: int = Field(default=10_000, ge=1, le=10_000_000)
    rate_per_s: float = Field(default=50.0, gt=0)
    burst: int = Field(default=100, ge=1)

    @field_validator("token")
    @classmethod
    def _usable_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        problem = token_problem(value.get_secret_value())
        if problem:
            raise ValueError(f"the token {problem}")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            ipaddress.ip_network(part, strict=False)
        return value

    @property
    def proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(p.strip(), strict=False)
                for p in self.trusted_proxies.split(",") if p.strip()]

    def require_auth(self) -> None:
        """Refuse to serve without a token unless auth was disabled on purpose."""
        if self.token is None and self.auth != "disabled":
            raise SettingsError(
                f"invalid setting REMITFLOW_API_TOKEN: required to serve /v1 ({GENERATE_HINT}), "
                "or set REMITFLOW_API_AUTH=disabled to serve it without authentication")


class HttpSettings(BaseSettings):
    """The HTTP server every service runs (``REMITFLOW_HTTP_*``)."""

    model_config = _config("REMITFLOW_HTTP_")

    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, le=64 * 1024 * 1024,
        description="largest request body any route reads (413 beyond, refused before it "
                    "is buffered; docs/runbook.md, Request limits)")
    max_form_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024,
        description="largest form a page (the console) reads; 413 beyond")
    host: str = "0.0.0.0"
    port: int | None = Field(default=None, ge=1, le=65535)


Level = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class LogSettings(BaseSettings):
    """Logging (``REMITFLOW_LOG_*``)."""

    model_config = _config("REMITFLOW_LOG_")

    level: Level = "INFO"
    format: Literal["json", "console"] = "json"
    level_libraries: Level = Field(
        default="WARNING", description="standard-library loggers (uvicorn, botocore, asyncio); "
                                       "redacted like our own events")


class StreamSettings(BaseSettings):
    """The stream consumer's timings (``REMITFLOW_STREAM_*``; docs/stream.md)."""

    model_config = _config("REMITFLOW_STREAM_")

    # An idle shard is read every idle_max_s (one GetRecords each): at 1 s that is
    # 86,400 reads a day per shard, about $0.02 a day; docs/capacity.md, "Latency".
    poll_interval_s: float = Field(default=0.25, gt=0)
    idle_max_s: float = Field(default=1.0, gt=0)
    busy_window_s: float = Field(
        default=10.0, ge=0, le=3600, description="keep reading a shard every "
        "stream_poll_interval_s for this long after a read that returned records, then back "
        "off to stream_idle_max_s (docs/stream.md)")
    stall_after_s: float = Field(
        default=60.0, gt=0, description="a held shard not read for this long makes /readyz "
                                         "false (its lag gauge keeps growing meanwhile)")
    failover_s: float = Field(default=10.0, gt=0)
    batch_size: int = Field(default=100, ge=1, le=1000)
    batching_window_ms: int = Field(default=0, ge=0, le=300_000)
    start_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    max_attempts: int = Field(default=3, ge=1, le=100)
    sync_interval_s: float = Field(default=30.0, gt=0)
    checkpoint_interval_s: float = Field(
        default=2.0, ge=0, le=60, description="write a shard's checkpoint at most this often "
        "(0: after every batch); a crash replays up to this much (docs/stream.md)")


class TaskSettings(BaseSettings):
    """Task workers and workflows (``REMITFLOW_TASK_*``)."""

    model_config = _config("REMITFLOW_TASK_")

    heartbeat_s: float = Field(default=20.0, gt=0)
    timeout_s: int = Field(default=300, ge=10)
    backlog_max: int = Field(
        default=32, ge=0, description="back-pressure: start workflows only while the task "
        "queue holds fewer unreceived tasks than this (0: no limit); see docs/capacity.md")

    @property
    def heartbeat_timeout_s(self) -> int:
        """The workflow gives up on a task after this long without a heartbeat."""
        return int(self.heartbeat_s * 3)

    @property
    def visibility_s(self) -> int:
        """Task message visibility: outlives a missed heartbeat, then the task is re-read."""
        return self.heartbeat_timeout_s + 10

    @property
    def workflow_timeout_s(self) -> int:
        """A whole execution's timeout: three task timeouts plus room for the status writes."""
        return self.timeout_s * 3 + 120


class IntakeSettings(BaseSettings):
    """How a queue consumer hides a message it cannot handle now (``REMITFLOW_INTAKE_*``)."""

    model_config = _config("REMITFLOW_INTAKE_")

    retry_base_s: float = Field(
        default=2.0, ge=1, description="first backoff (message visibility) after a message "
                                       "could not be stored for a transient reason; doubles "
                                       "per receive")
    retry_cap_s: float = Field(default=900.0, ge=1, le=43_200)

    def schedule(self) -> Schedule:
        """The visibility back-off: ``retry_base_s`` doubling per receive up to
        ``retry_cap_s``, jittered; the intake's, and the event queues' too."""
        return Schedule.exponential(self.retry_base_s, self.retry_cap_s, jitter=True)


class RetrySettings(BaseSettings):
    """Workflow retries (``REMITFLOW_RETRY_*``; docs/delivery.md)."""

    model_config = _config("REMITFLOW_RETRY_")

    max_attempts: int | None = Field(
        default=None, ge=1, le=100, description="when set, trims a kind's schedule or repeats "
                                                "its last delay to give this many attempts")
    shards: int = Field(default=4, ge=1, le=64)
    schedules: dict[str, str] = Field(
        default_factory=dict,
        description="schedule key (a job kind's name or a channel) -> delays between attempts, "
                    "e.g. '5s,5m,30m,2h'; read from REMITFLOW_RETRY_SCHEDULE_<KEY> variables")

    @model_validator(mode="before")
    @classmethod
    def _schedule_variables(cls, data: object) -> object:
        """``REMITFLOW_RETRY_SCHEDULE_<KEY>`` variables fill ``schedules``; explicit
        ``schedules`` entries (constructor arguments) win over the environment. The
        removed exponential mode's variables are refused, naming their replacement."""
        if not isinstance(data, dict):
            return data
        legacy = [name for name in LEGACY_RETRY if name in os.environ]
        if legacy:
            raise ValueError(f"{' and '.join(legacy)}: the exponential retry mode is gone; "
                             "give the delays as REMITFLOW_RETRY_SCHEDULE_<KEY> (a kind's "
                             "name or a channel), e.g. '30s,1m,2m,4m' (docs/delivery.md)")
        prefix = "REMITFLOW_RETRY_SCHEDULE_"
        found = {k[len(prefix):].lower(): v for k, v in os.environ.items()
                 if k.startswith(prefix) and len(k) > len(prefix)}
        merged = {**found, **dict(data.get("schedules") or {})}
        for key, text in merged.items():
            try:
                parse_schedule(text)
            except ValueError as exc:
                raise ValueError(f"{prefix}{key.upper()}: {exc}") from None
        return {**data, "schedules": merged}


class LifecycleSettings(BaseSettings):
    """Data lifecycle (docs/architecture.md, "Data lifecycle"): retention, tombstones,
    archive. One block on purpose: the variables keep their names (``REMITFLOW_*``)."""

    model_config = _config("REMITFLOW_")

    retention_days: str = Field(
        default="90", pattern=r"^\s*[0-9.]+\s*(,\s*[a-z0-9_-]+\s*=\s*[0-9.]+\s*)*$",
        description="days a finished job stays in its table before DynamoDB TTL expires it: "
                    "'90' for every kind, or '90,notification=30' per kind name (fractions "
                    "allowed: remitflow dev uses minutes)")
    idempotency_days: float = Field(
        default=400.0, gt=0,
        description="days a keys-only tombstone of an expired job keeps intake idempotent")
    archive_bucket: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="bucket of the archive (expired jobs, the financial record); default "
                    "'<prefix>-archive' (lower case); on AWS give a globally unique name")
    archive_retention_days: int = Field(
        default=7 * 365 + 2, ge=1, description="Object Lock (governance) retention of archive "
                                               "objects, declared in the CDK stack")
    archive_cold_after_days: int = Field(
        default=90, ge=0, description="archive objects move to a colder storage class "
                                      "after this many days (CDK lifecycle rule; 0: never)")

    def retention_s(self, kind: str) -> float:
        """Seconds a finished job of ``kind`` is kept (``REMITFLOW_RETENTION_DAYS``)."""
        default, *overrides = (p.strip() for p in self.retention_days.split(","))
        per_kind = dict(o.replace(" ", "").split("=", 1) for o in overrides)
        return float(per_kind.get(kind, default)) * 86400.0


class FaultSettings(BaseSettings):
    """Dev/test fault injection, one mechanism (shared/pipeline/faults.py); unset in
    production (``REMITFLOW_FAULTS``, ``REMITFLOW_FAULT_*``)."""

    model_config = SettingsConfigDict(env_prefix="REMITFLOW_FAULT_", extra="forbid",
                                      populate_by_name=True)

    plan: str | None = Field(
        default=None, validation_alias="REMITFLOW_FAULTS",
        description="dev/test fault injection: 'transient-once:REGEX,transient-always:REGEX' "
                    "makes task handlers fail transiently for matching request ids")
    point: str | None = Field(
        default=None, pattern=r"^[a-z_]+\.[a-z_]+$",
        description="test only: the process exits (like kill -9) at this crash point, e.g. "
                    "'starter.after_running' (shared/pipeline/faults.py)")
    after: int | None = Field(
        default=None, ge=0,
        description="test only: a counting crash point fires once its count reaches this")
