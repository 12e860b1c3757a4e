"""Every shipped template exists in every shipped locale, and each one renders."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.notification.render import Renderer, sample_advices
from services.notification.rules import DEFAULT_TEMPLATES_DIR, RuleSet
from services.notification.service import RULES

PARTS = (".html", ".subject.txt", ".txt")


def shipped() -> tuple[list[str], set[str]]:
    locales = sorted(p.name for p in DEFAULT_TEMPLATES_DIR.iterdir() if p.is_dir())
    ids = {f.name.split(".", 1)[0] for loc in locales
           for f in (DEFAULT_TEMPLATES_DIR / loc).iterdir() if f.name.endswith(PARTS)}
    return locales, ids


def test_every_template_id_is_in_every_shipped_locale() -> None:
    locales, ids = shipped()
    assert {"en", "de", "fr", "ja", "pt-BR"} <= set(locales)
    missing = [f"{loc}/{tid}{part}" for tid in sorted(ids) for loc in locales for part in PARTS
               if not (DEFAULT_TEMPLATES_DIR / loc / f"{tid}{part}").is_file()]
    assert missing == [], f"templates missing in a shipped locale: {missing}"


@pytest.mark.parametrize("locale", shipped()[0])
@pytest.mark.parametrize("template_id", sorted(shipped()[1]))
def test_each_renders_in_its_own_locale(locale: str, template_id: str) -> None:
    renderer = Renderer.load(Path(DEFAULT_TEMPLATES_DIR), RuleSet.load(RULES))
    for advice in sample_advices():
        out = renderer.render(advice, template_id=template_id, locale=locale)
        assert out.locale_used == locale and out.subject and out.text and out.html
        assert "{{" not in out.text + out.html
