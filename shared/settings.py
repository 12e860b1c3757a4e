"""Settings, built once per process from the environment (``REMITFLOW_`` prefix).

Standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``) are honoured as-is.
Durations carry their unit in the name. An invalid value fails at start with a
message that names the variable (see :func:`load_settings`).
"""

from __future__ import annotations

import ipaddress
from itertools import pairwise
from typing import Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.retry import Backoff
from shared.schedule import parse_schedule

RECONCILE_MARGIN_S = 60.0


class PartnerFileRules(BaseModel):
    """How one partner's bank files are read (docs/bankfiles.md, "Reference rules").

    Attributes:
        invoice_from_end_to_end: a transaction with neither a structured reference
            nor an invoice-like token in ``Ustrd`` takes its end-to-end id as the
            invoice id (for partners whose payers quote the invoice there).
        payee_map: bank creditor id (else name) → payee id; when set, creditors
            missing from it are rejected (``unknown_payee``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    invoice_from_end_to_end: bool = False
    payee_map: dict[str, str] | None = None


class SettingsError(SystemExit):
    """Raised at start-up for an invalid setting; the message names the variable."""


PLACEHOLDER_TOKENS = frozenset({"change-me", "changeme", "replace-me", "secret", "token"})
# Words that make a token a copied placeholder wherever they appear in it.
PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "replaceme", "replace-me",
                     "password", "secret", "example", "default", "letmein", "qwerty")
MIN_TOKEN_LENGTH = 16
MIN_TOKEN_DISTINCT = 6
GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def predictable(token: str) -> bool:
    """Few distinct characters (``aaaa…``, ``abab…``) or mostly repeated or consecutive
    neighbours (``abcd…``, ``1234…``): patterns a person types, never a generator's."""
    steps = sum(abs(ord(a) - ord(b)) <= 1 for a, b in pairwise(token))
    return len(set(token)) < MIN_TOKEN_DISTINCT or steps * 2 >= len(token) - 1


def token_problem(token: str) -> str | None:
    """Why ``token`` is unusable as an API token, or None when it is acceptable.

    Placeholders from example files, short tokens and low-entropy ones (``aaaa…``,
    ``changeme12345678``) are refused, so neither a copied example nor a typed
    "password" becomes a working credential.
    """
    lowered = token.strip().lower()
    if lowered in PLACEHOLDER_TOKENS or any(w in lowered for w in PLACEHOLDER_WORDS):
        return f"is a placeholder; {GENERATE_HINT}"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"is shorter than {MIN_TOKEN_LENGTH} characters; {GENERATE_HINT}"
    if predictable(token):
        return f"is too predictable (repeated or sequential characters); {GENERATE_HINT}"
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REMITFLOW_", extra="ignore")

    prefix: str = Field(default="remitflow", pattern=r"^[a-zA-Z0-9-]{1,40}$")
    aws_region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    aws_endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")

    api_token: SecretStr | None = None
    api_auth: Literal["required", "disabled"] = Field(
        default="required", description="'disabled' serves /v1 without a token (dev only); "
                                        "otherwise a service refuses to start without one")
    api_trusted_proxies: str = Field(
        default="", description="comma-separated CIDRs whose X-Forwarded-For is believed "
                                "(the rate limiter's client address)")
    api_max_clients: int = Field(default=10_000, ge=1, le=10_000_000)
    api_rate_per_s: float = Field(default=50.0, gt=0)
    api_burst: int = Field(default=100, ge=1)
    http_max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, le=64 * 1024 * 1024,
        description="largest request body any route reads (413 beyond, refused before it "
                    "is buffered; docs/runbook.md, Request limits)")
    http_max_form_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024,
        description="largest form a page (the console) reads; 413 beyond")
    http_host: str = "0.0.0.0"
    http_port: int | None = Field(default=None, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    log_level_libraries: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING", description="standard-library loggers (uvicorn, botocore, asyncio); "
                                       "redacted like our own events")

    max_in_flight: int = Field(default=32, ge=1, le=1000)
    batching: bool = Field(
        default=True, description="false: the Lambda-equivalent baseline (bench): one message "
                                  "per receive and per delete, one in flight per worker")
    receive_wait_s: int = Field(default=10, ge=0, le=20)
    visibility_timeout_s: int = Field(default=60, ge=5, le=43200)
    shutdown_grace_s: float = Field(default=25.0, gt=0, le=600)
    intake_retry_base_s: float = Field(
        default=2.0, ge=1, description="first backoff (message visibility) after a message "
                                       "could not be stored for a transient reason; doubles "
                                       "per receive")
    intake_retry_cap_s: float = Field(default=900.0, ge=1, le=43_200)
    aws_max_attempts: int = Field(default=5, ge=1, le=20,
                                  description="SDK attempts per AWS call (standard retry mode)")

    # An idle shard is read every stream_idle_max_s (one GetRecords each): at 1 s that is
    # 86,400 reads a day per shard, about $0.02 a day; docs/capacity.md, "Latency".
    stream_poll_interval_s: float = Field(default=0.25, gt=0)
    stream_idle_max_s: float = Field(default=1.0, gt=0)
    stream_busy_window_s: float = Field(
        default=10.0, ge=0, le=3600, description="keep reading a shard every "
        "stream_poll_interval_s for this long after a read that returned records, then back "
        "off to stream_idle_max_s (docs/stream.md)")
    stream_stall_after_s: float = Field(
        default=60.0, gt=0, description="a held shard not read for this long makes /readyz "
                                         "false (its lag gauge keeps growing meanwhile)")
    stream_failover_s: float = Field(default=10.0, gt=0)
    stream_batch_size: int = Field(default=100, ge=1, le=1000)
    stream_batching_window_ms: int = Field(default=0, ge=0, le=300_000)
    stream_start_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    stream_max_attempts: int = Field(default=3, ge=1, le=100)
    stream_sync_interval_s: float = Field(default=30.0, gt=0)
    stream_checkpoint_interval_s: float = Field(
        default=2.0, ge=0, le=60, description="write a shard's checkpoint at most this often "
        "(0: after every batch); a crash replays up to this much (docs/stream.md)")
    start_attempts: int = Field(default=3, ge=1, le=10)

    task_heartbeat_s: float = Field(default=20.0, gt=0)
    task_timeout_s: int = Field(default=300, ge=10)
    inline_payload_max_bytes: int = Field(
        default=16 * 1024, ge=0, le=32 * 1024, description="a kind that inlines its payload "
        "(JobKind.inline_payload) puts a stored payload up to this size (escaped JSON) into "
        "the execution input, so its task worker reads no item; 0: never (shared/pipeline/"
        "starter.py)")
    task_backlog_max: int = Field(
        default=32, ge=0, description="back-pressure: start workflows only while the task "
        "queue holds fewer unreceived tasks than this (0: no limit); see docs/capacity.md")

    sweeper_interval_s: float = Field(default=60.0, gt=0)
    # How often a service reads the depth of the dead-letter queues it owns.
    queue_depth_interval_s: float = Field(default=60.0, gt=0)
    retry_max_attempts: int = Field(default=5, ge=1, le=100)
    retry_backoff_base_s: float = Field(default=30.0, ge=0)
    retry_backoff_cap_s: float = Field(default=3600.0, ge=0)
    retry_shards: int = Field(default=4, ge=1, le=64)
    lease_ttl_s: float = Field(default=30.0, gt=0)
    sweeper_leader_lease: bool = Field(
        default=True, description="only the holder of the sweeper:leader lease sweeps; false "
                                  "makes every replica sweep (safe, just more reads)")
    start_check_after_s: float = Field(
        default=120.0, gt=0,
        description="a RUNNING job this old whose execution does not exist (a process "
                    "killed between its RUNNING write and StartExecution) is started by "
                    "the sweeper, instead of waiting for the reconcile")
    handoff_grace_s: float = Field(
        default=600.0, gt=0,
        description="a published job whose subscribers hold no job for it this long after "
                    "it succeeded is published again by the sweeper (divided by "
                    "REMITFLOW_DEV_TIME_SCALE); see docs/architecture.md, Hand-off check")
    handoff_max_repairs: int = Field(default=3, ge=1, le=100)
    reconcile_after_s: float | None = Field(
        default=None, gt=0,
        description="RUNNING longer than this is checked with DescribeExecution; default: "
                    "the workflow timeout (task_timeout_s * 3 + 120) plus 60 s")

    advice_extra_fields: str = Field(
        default="end_to_end_id,charge_bearer", pattern=r"^[A-Za-z0-9_,\s-]*$",
        description="comma-separated partner extra fields copied into the advice (and so to "
                    "SNS, the notification job, the API and webhooks); every other extra "
                    "field stays only on the stored partner payload")

    sender_email: str = "remittances@example.com"
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_allow_private: bool = False

    # Partner files (S3 ObjectCreated -> SQS -> file intake; docs/bankfiles.md).
    partner_files_bucket: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="bucket for partner files; default '<prefix>-partner-files' (lower case); "
                    "on AWS give a globally unique name")
    partner_files_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    partner_files_checkpoint_every: int = Field(default=500, ge=1)
    partner_files_max_in_flight: int = Field(default=2, ge=1, le=32)
    partner_files_rules: dict[str, PartnerFileRules] = Field(
        default_factory=dict,
        description="per-partner reading rules, JSON keyed by partner code: "
                    '{"FIRSTBANK": {"invoice_from_end_to_end": true, "payee_map": '
                    '{"DE-CRED-1": "PAYEE-0002"}}}; see docs/bankfiles.md, Reference rules')

    # Dev/test fault injection, one mechanism (shared/pipeline/faults.py); unset in production.
    faults: str | None = Field(
        default=None,
        description="dev/test fault injection: 'transient-once:REGEX,transient-always:REGEX' "
                    "makes task handlers fail transiently for matching request ids")
    fault_point: str | None = Field(
        default=None, pattern=r"^[a-z_]+\.[a-z_]+$",
        description="test only: the process exits (like kill -9) at this crash point, e.g. "
                    "'starter.after_running' (shared/pipeline/faults.py)")
    fault_after: int | None = Field(
        default=None, ge=0,
        description="test only: a counting crash point fires once its count reaches this")

    # --- delivery: retry schedules, dev time, unknown e-mail outcomes, endpoints -------------
    retry_schedules: dict[str, str] = Field(
        default_factory=dict,
        description="schedule key (a job kind's name or a channel) -> delays between attempts, "
                    "e.g. '5s,5m,30m,2h'; read from REMITFLOW_RETRY_SCHEDULE_<KEY> variables")
    dev_time_scale: float = Field(
        default=1.0, ge=1.0, le=1_000_000,
        description="divides every retry delay (remitflow dev: 60, so 5 min takes 5 s)")
    email_unknown_outcome: Literal["fail", "resend"] = Field(
        default="fail",
        description="an SES send with no proof either way: 'fail' (FAILED, reason "
                    "outcome_unknown, for an operator) or 'resend' (at-least-once)")
    email_resend_after_s: float = Field(
        default=900.0, ge=0,
        description="with email_unknown_outcome=resend: wait this long before resending")

    # Webhook endpoint health (services/notification/endpoints.py) and SES events.
    endpoint_disable_after_s: float = Field(
        default=5 * 86400.0, gt=0,
        description="disable a webhook endpoint failing for this long; its notifications "
                    "wait (FAILED, endpoint_disabled) until an operator enables it")
    endpoint_alert_after_s: float = Field(
        default=3600.0, gt=0,
        description="RemitflowWebhookEndpointFailing fires past this streak (exported)")
    endpoint_metrics_interval_s: float = Field(default=30.0, gt=0)
    ses_event_window_s: float = Field(
        default=900.0, ge=0,
        description="an e-mail whose SES outcome is unknown waits this long for its SES "
                    "sending event before the unknown-outcome policy applies")

    # --- data lifecycle (docs/architecture.md, "Data lifecycle"): retention, tombstones,
    # archive. One block on purpose: it moves as a whole into its own model. -----------
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

    @property
    def archive_bucket_name(self) -> str:
        return self.archive_bucket or f"{self.prefix.lower()}-archive"

    @model_validator(mode="before")
    @classmethod
    def _schedule_variables(cls, data: object) -> object:
        """``REMITFLOW_RETRY_SCHEDULE_<KEY>`` variables fill ``retry_schedules``.

        Explicit ``retry_schedules`` entries (constructor arguments) win over the
        environment.
        """
        import os

        if not isinstance(data, dict):
            return data
        prefix = "REMITFLOW_RETRY_SCHEDULE_"
        found = {k[len(prefix):].lower(): v for k, v in os.environ.items()
                 if k.startswith(prefix) and len(k) > len(prefix)}
        merged = {**found, **dict(data.get("retry_schedules") or {})}
        for key, text in merged.items():
            try:
                parse_schedule(text)
            except ValueError as exc:
                raise ValueError(f"{prefix}{key.upper()}: {exc}") from None
        return {**data, "retry_schedules": merged}
    @field_validator("api_token")
    @classmethod
    def _usable_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        problem = token_problem(value.get_secret_value())
        if problem:
            raise ValueError(f"the token {problem}")
        return value

    @field_validator("api_trusted_proxies")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            ipaddress.ip_network(part, strict=False)
        return value

    @property
    def trusted_proxies(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(p.strip(), strict=False)
                for p in self.api_trusted_proxies.split(",") if p.strip()]

    @property
    def advice_extras_allowed(self) -> frozenset[str]:
        return frozenset(f.strip() for f in self.advice_extra_fields.split(",") if f.strip())

    def require_api_auth(self) -> None:
        """Refuse to serve without a token unless auth was disabled on purpose."""
        if self.api_token is None and self.api_auth != "disabled":
            raise SettingsError(
                "invalid setting REMITFLOW_API_TOKEN: required to serve /v1 (generate one "
                "with: python -c 'import secrets; print(secrets.token_urlsafe(32))'), or set "
                "REMITFLOW_API_AUTH=disabled to serve it without authentication")

    @model_validator(mode="after")
    def _baseline(self) -> Settings:
        # One slot per worker makes intake and task workers receive (and delete) one
        # message at a time: every receive asks for min(10, free slots) messages.
        if not self.batching:
            self.max_in_flight = 1
        return self

    @property
    def task_heartbeat_timeout_s(self) -> int:
        """The workflow gives up on a task after this long without a heartbeat."""
        return int(self.task_heartbeat_s * 3)

    @property
    def task_visibility_s(self) -> int:
        """Task message visibility: outlives a missed heartbeat, then the task is re-read."""
        return self.task_heartbeat_timeout_s + 10

    @property
    def workflow_timeout_s(self) -> int:
        """A whole execution's timeout: three task timeouts plus room for the status writes."""
        return self.task_timeout_s * 3 + 120

    @property
    def handoff_grace_effective_s(self) -> float:
        return self.handoff_grace_s / self.dev_time_scale

    @property
    def reconcile_after_effective_s(self) -> float:
        """When a ``RUNNING`` job is checked against its execution.

        Past the workflow's timeout an execution has ended, so a margin beyond it
        never reconciles a live attempt.
        """
        if self.reconcile_after_s is not None:
            return self.reconcile_after_s
        return self.workflow_timeout_s + RECONCILE_MARGIN_S

    def port_or(self, default: int) -> int:
        return self.http_port or default


def load_settings(**overrides: object) -> Settings:
    """Build settings; turn a validation error into a one-line message per variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            var = field.upper() if field.startswith("AWS_") else f"REMITFLOW_{field.upper()}"
            lines.append(f"invalid setting {var}: {err['msg']}")
        raise SettingsError("\n".join(lines)) from None


def deferral(settings: Settings) -> Backoff:
    """How a queue consumer hides a message it could not handle now (an outage): the
    intake's schedule, ``REMITFLOW_INTAKE_RETRY_BASE_S`` doubling per receive up to
    ``REMITFLOW_INTAKE_RETRY_CAP_S``, for the event queues too."""
    return Backoff(settings.intake_retry_base_s, settings.intake_retry_cap_s)
