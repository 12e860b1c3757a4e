"""One source for configuration: the settings models.

The core (``shared/settings/``, its concern models included) and every service's own
model (``services/<name>/settings.py``, declared on its ``Service`` in
``tools/stack.py`` ``SERVICES``). ``docs/configuration.md`` lists every variable they
read and no other, once, with the model's default and under its owner's section (a
heading naming a service holds exactly that service's variables); the Helm chart's
``config`` values (``values.yaml``, each named after its variable) default to the same
values, and every ``REMITFLOW_`` variable the chart sets is one a model reads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from services.enrichment.kind import ENRICHMENT
from services.notification.kind import NOTIFICATION
from shared.settings import Settings, variables
from tools.stack import PORTS, SERVICES

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
CHART = ROOT / "k8s" / "charts" / "remitflow"
ROW = re.compile(r"^\| `([A-Z][A-Z0-9_<>]*)` \| ([^|]*) \|", re.MULTILINE)
SCHEDULES = "REMITFLOW_RETRY_SCHEDULE_<KEY>"

# Defaults the page states in words, because the model's literal is not what applies.
STATED = {
    "REMITFLOW_HTTP_PORT": " / ".join(str(p) for p in PORTS.values()),  # per service
    "REMITFLOW_API_TOKEN": "required",                      # none: a service refuses to start
    SCHEDULES: "the kind's ([delivery.md](delivery.md#delivery))",
    "REMITFLOW_RETRY_MAX_ATTEMPTS": "(schedule)",           # applies only when set
    "REMITFLOW_RECONCILE_AFTER_S": "workflow timeout + 60 s",
}


def _fields() -> dict[str, tuple[str, type[BaseSettings], str]]:
    """Every variable → (its owner: "core" or the one service that reads it, the
    model, the field)."""
    out = {name: ("core", model, field) for name, (model, field) in variables(Settings).items()}
    for service in SERVICES:
        for name, (model, field) in variables(service.settings).items():
            out.setdefault(name, (service.name, model, field))
    return {SCHEDULES if name == "REMITFLOW_RETRY_SCHEDULES" else name: owned
            for name, owned in out.items()}


FIELDS = _fields()


def default(name: str) -> Any:
    _, model, field = FIELDS[name]
    info = model.model_fields[field]
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


def test_the_page_lists_every_variable_of_the_models_and_no_other() -> None:
    rows = ROW.findall(DOC.read_text())
    assert len(rows) == len({r[0] for r in rows}), "a variable is listed twice"
    assert set(documented()) == set(FIELDS)


def test_each_variable_is_under_its_owners_section() -> None:
    services = {s.name for s in SERVICES}
    owner, placed = "core", {}
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            first = line[3:].split()[0].lower()
            owner = first if first in services else "core"
        elif row := ROW.match(line):
            placed[row.group(1)] = owner
    assert {name: owned[0] for name, owned in FIELDS.items()} == placed


def test_each_documented_default_is_the_models() -> None:
    page = documented()
    wrong = {}
    for name in FIELDS:
        cell = page.get(name, "")
        want = STATED.get(name, shown(default(name)))
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
    for key, name in named.items():
        assert name in FIELDS, f"config.{key}: {name} is no setting"
        if name == SCHEDULES:
            kinds = {ENRICHMENT.name: ENRICHMENT.retry_schedule, **NOTIFICATION.schedules}
            assert values[key] == {k: kinds[k] for k in values[key]}
        else:
            assert values[key] == default(name), f"config.{key}"


def test_every_variable_the_chart_sets_is_a_setting() -> None:
    page = set(documented())
    text = "\n".join(p.read_text() for p in (CHART / "templates").rglob("*")
                     if p.is_file())
    named = set(re.findall(r"name: (REMITFLOW_[A-Z_]+)", text))
    assert named, "the chart sets REMITFLOW_ variables"
    page |= {"REMITFLOW_RETRY_SCHEDULE_"} if SCHEDULES in page else set()
    unknown = named - page
    assert unknown == set()
