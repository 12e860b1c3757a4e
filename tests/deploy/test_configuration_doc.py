"""One source for configuration: the settings model (``shared/settings.py``).

``docs/configuration.md`` lists every variable the model reads and no other, each
with the model's default; the Helm chart's ``config`` values (``values.yaml``, each
named after its variable) default to the same values, and every ``REMITFLOW_``
variable the chart sets is one the model reads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from services.enrichment.kind import ENRICHMENT
from services.notification.kind import NOTIFICATION
from shared.settings import Settings
from tools.stack import PORTS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
CHART = ROOT / "k8s" / "charts" / "remitflow"
ROW = re.compile(r"^\| `([A-Z][A-Z0-9_<>]*)` \| ([^|]*) \|", re.MULTILINE)

# Defaults the page states in words, because the model's literal is not what applies.
STATED = {
    "REMITFLOW_HTTP_PORT": " / ".join(str(p) for p in PORTS.values()),  # per service
    "REMITFLOW_API_TOKEN": "required",                      # none: a service refuses to start
    "REMITFLOW_RETRY_SCHEDULE_<KEY>": "the kind's ([delivery.md](delivery.md#delivery))",
    "REMITFLOW_RETRY_MAX_ATTEMPTS": "(schedule)",           # applies only when set
    "REMITFLOW_RETRY_BACKOFF_BASE_S": "unset",              # applies only when set
    "REMITFLOW_RETRY_BACKOFF_CAP_S": "unset",
    "REMITFLOW_RECONCILE_AFTER_S": "workflow timeout + 60 s",
}


def variable(field: str) -> str:
    """The environment variable that sets a field of the model."""
    alias = Settings.model_fields[field].validation_alias
    if alias is not None:
        return str(getattr(alias, "choices", [alias])[0])
    if field == "retry_schedules":
        return "REMITFLOW_RETRY_SCHEDULE_<KEY>"
    return f"REMITFLOW_{field.upper()}"


def default(field: str) -> Any:
    info = Settings.model_fields[field]
    return info.default_factory() if info.default_factory else info.default  # type: ignore[call-arg]


def shown(value: Any) -> str:
    """A default as the page writes it."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"{value:g}" if value < 1e6 else str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return f"`{value}`" if value else "empty"
    return "empty" if not value else repr(value)


def documented() -> dict[str, str]:
    return {m.group(1): m.group(2).strip() for m in ROW.finditer(DOC.read_text())}


def test_the_page_lists_every_variable_of_the_model_and_no_other() -> None:
    expected = {variable(f) for f in Settings.model_fields}
    rows = ROW.findall(DOC.read_text())
    assert len(rows) == len({r[0] for r in rows}), "a variable is listed twice"
    assert set(documented()) == expected


def test_each_documented_default_is_the_models() -> None:
    page = documented()
    wrong = {}
    for field in Settings.model_fields:
        name, cell = variable(field), page.get(variable(field), "")
        want = STATED.get(name, shown(default(field)))
        if cell != want and not (name not in STATED and cell.startswith(want + " (")):
            wrong[name] = (cell, want)
    assert wrong == {}


def test_the_charts_config_values_are_the_models_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    named: dict[str, str] = {}
    comment = None
    block = (CHART / "values.yaml").read_text().split("\nconfig:\n", 1)[1]
    for line in block.splitlines():
        if line and not line.startswith(" "):
            break
        names = re.match(r"^  # -- (REMITFLOW_[A-Z_<>]+):", line)
        if names:
            comment = names.group(1)
        elif (entry := re.match(r"^  ([a-zA-Z]+):", line)) and comment:
            named[entry.group(1)], comment = comment, None
    assert set(named) == set(values), "every config value names its variable"
    by_variable = {variable(f): f for f in Settings.model_fields}
    for key, name in named.items():
        assert name in by_variable, f"config.{key}: {name} is no setting"
        if name == "REMITFLOW_RETRY_SCHEDULE_<KEY>":
            kinds = {ENRICHMENT.name: ENRICHMENT.retry_schedule, **NOTIFICATION.schedules}
            assert values[key] == {k: kinds[k] for k in values[key]}
        else:
            assert values[key] == default(by_variable[name]), f"config.{key}"


def test_every_variable_the_chart_sets_is_a_setting() -> None:
    page = set(documented())
    text = "\n".join(p.read_text() for p in (CHART / "templates").rglob("*")
                     if p.is_file())
    named = set(re.findall(r"name: (REMITFLOW_[A-Z_]+)", text))
    assert named, "the chart sets REMITFLOW_ variables"
    page |= {"REMITFLOW_RETRY_SCHEDULE_"} if "REMITFLOW_RETRY_SCHEDULE_<KEY>" in page else set()
    unknown = named - page
    assert unknown == set()
