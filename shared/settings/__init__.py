"""Settings, built once per process from the environment (``REMITFLOW_`` prefix).

The core model (:class:`Settings`) holds what the mechanism reads: the prefix, AWS,
the process, and the pattern's timings grouped into small concern models
(:mod:`shared.settings.concerns`: ``settings.stream.poll_interval_s`` reads
``REMITFLOW_STREAM_POLL_INTERVAL_S``). Each service subclasses it in its own folder
with what only it reads (``services/<name>/settings.py``, declared on its
:class:`~shared.service.Service`), so each process validates its own variables.

Standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``) are honoured as-is.
Durations carry their unit in the name. An invalid value fails at start with a
message that names the variable (see :func:`load_settings`); the table of
docs/configuration.md is checked against these models.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from shared.schedule import Schedule
from shared.settings.concerns import (
    ApiSettings,
    FaultSettings,
    HttpSettings,
    IntakeSettings,
    LifecycleSettings,
    LogSettings,
    RetrySettings,
    SettingsError,
    StreamSettings,
    TaskSettings,
)
from shared.settings.tokens import token_problem

__all__ = ["Settings", "SettingsError", "concerns", "deferral", "load_settings", "narrow",
           "token_problem", "variables"]


def concern_of(info: FieldInfo) -> type[BaseSettings] | None:
    kind = info.annotation
    return kind if isinstance(kind, type) and issubclass(kind, BaseSettings) else None


class _OwnVariables(EnvSettingsSource):
    """The environment minus the concern fields: each concern reads its own variables
    (``REMITFLOW_FAULTS`` is the fault plan, never the ``faults`` model as JSON)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if concern_of(field) is not None:
            return None, field_name, False
        return super().get_field_value(field, field_name)


class Settings(BaseSettings):
    """The core: what every service's process reads (at most 25 fields of its own)."""

    model_config = SettingsConfigDict(env_prefix="REMITFLOW_", extra="forbid")

    prefix: str = Field(default="remitflow", pattern=r"^[a-zA-Z0-9-]{1,40}$")
    aws_region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    aws_endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")
    aws_max_attempts: int = Field(default=5, ge=1, le=20,
                                  description="SDK attempts per AWS call (standard retry mode)")
    api: ApiSettings = Field(default_factory=ApiSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    shutdown_grace_s: float = Field(default=25.0, gt=0, le=600)

    max_in_flight: int = Field(default=32, ge=1, le=1000)
    batching: bool = Field(
        default=True, description="false: the Lambda-equivalent baseline (bench): one message "
                                  "per receive and per delete, one in flight per worker")
    receive_wait_s: int = Field(default=10, ge=0, le=20)
    visibility_timeout_s: int = Field(default=60, ge=5, le=43200)
    start_attempts: int = Field(default=3, ge=1, le=10)
    inline_payload_max_bytes: int = Field(
        default=16 * 1024, ge=0, le=32 * 1024, description="a kind that inlines its payload "
        "(JobKind.inline_payload) puts a stored payload up to this size (escaped JSON) into "
        "the execution input, so its task worker reads no item; 0: never (shared/pipeline/"
        "starter.py)")
    # How often a service reads the depth of the dead-letter queues it owns.
    queue_depth_interval_s: float = Field(default=60.0, gt=0)
    dev_time_scale: float = Field(
        default=1.0, ge=1.0, le=1_000_000,
        description="divides every retry delay (remitflow dev: 60, so 5 min takes 5 s)")
    # Read by a kind's task view, wherever a starter of that kind runs.
    advice_extra_fields: str = Field(
        default="end_to_end_id,charge_bearer", pattern=r"^[A-Za-z0-9_,\s-]*$",
        description="comma-separated partner extra fields copied into the advice (and so to "
                    "SNS, the notification job, the API and webhooks); every other extra "
                    "field stays only on the stored partner payload")
    # Read by provisioning and the file drop of whichever process names the bucket.
    partner_files_bucket: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="bucket for partner files; default '<prefix>-partner-files' (lower case); "
                    "on AWS give a globally unique name")

    stream: StreamSettings = Field(default_factory=StreamSettings)
    task: TaskSettings = Field(default_factory=TaskSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    faults: FaultSettings = Field(default_factory=FaultSettings)

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,  # replaced by _OwnVariables
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _OwnVariables(settings_cls), dotenv_settings, file_secret_settings

    @property
    def archive_bucket_name(self) -> str:
        return self.lifecycle.archive_bucket or f"{self.prefix.lower()}-archive"

    @property
    def advice_extras_allowed(self) -> frozenset[str]:
        return frozenset(f.strip() for f in self.advice_extra_fields.split(",") if f.strip())

    @model_validator(mode="after")
    def _baseline(self) -> Settings:
        # One slot per worker makes intake and task workers receive (and delete) one
        # message at a time: every receive asks for min(10, free slots) messages.
        if not self.batching:
            self.max_in_flight = 1
        return self

    def port_or(self, default: int) -> int:
        return self.http.port or default


S = TypeVar("S", bound=Settings)


def concerns(model: type[BaseSettings]) -> dict[str, type[BaseSettings]]:
    """The concern models composed into ``model``, by field."""
    return {name: kind for name, info in model.model_fields.items()
            if (kind := concern_of(info)) is not None}


def variable(model: type[BaseSettings], field: str) -> str:
    """The environment variable that sets ``field`` of ``model``."""
    alias = model.model_fields[field].validation_alias
    if alias is not None:
        return str(getattr(alias, "choices", [alias])[0])
    return f"{model.model_config.get('env_prefix', '')}{field}".upper()


def variables(model: type[BaseSettings]) -> dict[str, tuple[type[BaseSettings], str]]:
    """Every variable ``model`` reads (its concerns' too) → (the model, the field)."""
    out: dict[str, tuple[type[BaseSettings], str]] = {}
    for name in model.model_fields:
        sub = concern_of(model.model_fields[name])
        if sub is not None:
            out.update(variables(sub))
        else:
            out[variable(model, name)] = (model, name)
    return out


def _problems(exc: ValidationError, model: type[BaseSettings]) -> list[str]:
    lines = []
    for err in exc.errors():
        owner, loc = model, list(err["loc"])
        while loc and str(loc[0]) in owner.model_fields \
                and (sub := concern_of(owner.model_fields[str(loc[0])])) is not None:
            owner, loc = sub, loc[1:]
        if loc and str(loc[0]) in owner.model_fields:
            lines.append(f"invalid setting {variable(owner, str(loc[0]))}: {err['msg']}")
        else:  # a model-level check names its variable itself
            lines.append(f"invalid setting {str(err['msg']).removeprefix('Value error, ')}")
    return lines


@overload
def load_settings(**overrides: Any) -> Settings: ...
@overload
def load_settings(model: type[S], **overrides: Any) -> S: ...
def load_settings(model: type[Settings] = Settings, **overrides: Any) -> Settings:
    """Build ``model`` (the core, or a service's) and its concerns from the environment;
    turn validation errors into one line per variable, naming it."""
    lines: list[str] = []
    parts: dict[str, Any] = {}
    for name, concern in concerns(model).items():
        if name not in overrides:
            try:
                parts[name] = concern()
            except ValidationError as exc:
                lines += _problems(exc, concern)
                parts[name] = concern.model_construct()
    try:
        settings = model(**parts, **overrides)
    except ValidationError as exc:
        lines += _problems(exc, model)
    if lines:
        raise SettingsError("\n".join(lines))
    return settings


def narrow(settings: Settings, model: type[S]) -> S:
    """``settings`` as ``model`` (a service's): itself when it is one, else built from its
    values plus the variables only ``model`` reads (a process that loaded another model,
    such as bootstrap building a service's resources)."""
    if isinstance(settings, model):
        return settings
    return load_settings(model, **{name: getattr(settings, name)
                                   for name in Settings.model_fields})


def deferral(settings: Settings) -> Schedule:
    """How a queue consumer hides a message it could not handle now (an outage): the
    intake's schedule, ``REMITFLOW_INTAKE_RETRY_BASE_S`` doubling per receive up to
    ``REMITFLOW_INTAKE_RETRY_CAP_S``, for the event queues too."""
    return settings.intake.schedule()
