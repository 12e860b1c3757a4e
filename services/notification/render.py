"""Render a remittance advice into a localized subject, text body and HTML body.

Templates live in ``templates/<locale>/<template_id>.{subject.txt,txt,html}``; files
whose name starts with ``_`` at the top level (``_layout.html``, ``_parts.html``) are
shared partials. They run in Jinja's sandbox with ``StrictUndefined`` and HTML
autoescaping (``.html`` only), so a payee name like ``<script>`` is inert and a typo
in a template is an error, never an empty string.

:meth:`Renderer.load` compiles every template and renders each one against built-in
sample advices before the service takes traffic, so a broken template fails the
start-up, not a payment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment

from services.notification.formatting import (
    FORMAT_LOCALE_VAR,
    locale_chain,
    normalize_tag,
    register_filters,
)
from services.notification.rules import (
    DEFAULT_TEMPLATES_DIR,
    ROOT_TEMPLATE_LOCALE,
    TEMPLATE_ID_RE,
    ConfigError,
    RuleSet,
)
from shared.domain.advice import AdviceInvoice, AdvicePayee, RemittanceAdvice

PARTS: Final = ("subject.txt", "txt", "html")
#: Renderers already compiled in this process, by what :meth:`Renderer.load` read.
_LOADED: dict[tuple[Any, ...], Renderer] = {}
# Line breaks and ordinary blanks collapse; no-break spaces (1.234,56\xa0€) are kept.
_BREAKS: Final = re.compile(r"[ \t\r\n\f\v\x85\u2028\u2029]+")


class RenderError(Exception):
    """A message could not be rendered for one advice (unknown template, bad data)."""


@dataclass(frozen=True)
class RenderedMessage:
    """One rendered notification. ``subject`` is a single line (safe as a mail header)."""

    subject: str
    text: str
    html: str
    locale_used: str
    template_id: str


def _one_line(text: str) -> str:
    """A subject safe as a mail header: one line, no leading/trailing blanks."""
    return _BREAKS.sub(" ", text).strip()


def _split_name(name: str) -> tuple[str, str, str] | None:
    """``de/payment_settled.subject.txt`` → ``(de, payment_settled, subject.txt)``."""
    if "/" not in name:
        return None
    locale, _, filename = name.partition("/")
    for part in PARTS:
        suffix = "." + part
        if filename.endswith(suffix) and "/" not in filename:
            return locale, filename[: -len(suffix)], part
    return None


def _fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file under ``root``: its relative name, size and modification time."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            found.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


class Renderer:
    """Compiled templates for every locale; safe to share between concurrent tasks."""

    def __init__(self, env: SandboxedEnvironment, available: dict[str, frozenset[str]],
                 templates_dir: Path) -> None:
        self._env = env
        self._available = available  # template id -> locales that have it
        self.templates_dir = templates_dir

    @property
    def template_ids(self) -> frozenset[str]:
        return frozenset(self._available)

    def locales_for(self, template_id: str) -> frozenset[str]:
        """Locales that have their own version of ``template_id``."""
        return self._available.get(template_id, frozenset())

    @classmethod
    def load(cls, templates_dir: str | Path | None = None,
             rules: RuleSet | None = None, *, smoke_test: bool = True) -> Renderer:
        """Compile every template under ``templates_dir`` and check it against ``rules``.

        Guarantees on success: every file compiled; every (locale, id) has all three
        parts; every id exists in ``en``; every id the rules can choose exists; and
        (with ``smoke_test``) every template rendered against sample advices.

        A directory this process already compiled, unchanged since (every file's name,
        size and modification time), with the same rules, gives back the same
        renderer: compiling and smoke-testing every template costs about 0.2 s of CPU,
        which every build of the service (a test builds it hundreds of times) paid.

        Raises:
            ConfigError: Naming the offending file or template id.
        """
        root = Path(templates_dir or DEFAULT_TEMPLATES_DIR)
        if not root.is_dir():
            raise ConfigError(f"{root}: templates directory does not exist")
        key = (root.resolve(), _fingerprint(root), smoke_test,
               None if rules is None else (rules.source, rules.template_ids))
        if key not in _LOADED:
            _LOADED[key] = cls._compile(root, rules, smoke_test=smoke_test)
        return _LOADED[key]

    @classmethod
    def _compile(cls, root: Path, rules: RuleSet | None, *, smoke_test: bool) -> Renderer:
        env = SandboxedEnvironment(
            loader=FileSystemLoader(str(root), encoding="utf-8"),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False,
                                         default=False),
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
            keep_trailing_newline=True, auto_reload=False)
        register_filters(env)
        parts: dict[tuple[str, str], set[str]] = {}
        for name in env.list_templates():
            if any(seg.startswith(".") for seg in name.split("/")):
                continue
            try:
                env.get_template(name)
            except TemplateSyntaxError as exc:
                raise ConfigError(f"{root / name}:{exc.lineno}: {exc.message}") from exc
            except TemplateError as exc:
                raise ConfigError(f"{root / name}: {exc}") from exc
            if "/" not in name and name.startswith("_"):
                continue  # shared partial
            split = _split_name(name)
            if split is None or not TEMPLATE_ID_RE.match(split[1]):
                raise ConfigError(f"{root / name}: unexpected file; expected "
                                  "<locale>/<template_id>.subject.txt|.txt|.html or _partial")
            locale, template_id, part = split
            if normalize_tag(locale) != locale:
                raise ConfigError(f"{root / locale}: locale folder must be spelled "
                                  f"{normalize_tag(locale)!r}")
            parts.setdefault((locale, template_id), set()).add(part)
        available: dict[str, set[str]] = {}
        for (locale, template_id), found in sorted(parts.items()):
            missing = [p for p in PARTS if p not in found]
            if missing:
                raise ConfigError(f"{root / locale}: template {template_id!r} lacks "
                                  + ", ".join(f"{template_id}.{p}" for p in missing))
            available.setdefault(template_id, set()).add(locale)
        for template_id, locales in sorted(available.items()):
            if ROOT_TEMPLATE_LOCALE not in locales:
                raise ConfigError(f"{root}: template {template_id!r} exists in "
                                  f"{sorted(locales)} but not in the fallback locale "
                                  f"{ROOT_TEMPLATE_LOCALE!r}")
        if rules is not None:
            for rule in (*rules.rules, rules.default):
                if rule.template_id not in available:
                    raise ConfigError(f"{rules.source}: rule {rule.name!r} uses template "
                                      f"{rule.template_id!r}, missing from "
                                      f"{root / ROOT_TEMPLATE_LOCALE}")
        renderer = cls(env, {k: frozenset(v) for k, v in available.items()}, root)
        if smoke_test:
            renderer._smoke_test()
        return renderer

    def _smoke_test(self) -> None:
        for template_id, locales in sorted(self._available.items()):
            for locale in sorted(locales):
                for advice in sample_advices():
                    try:
                        self._render_in(advice, template_id, locale, locale)
                    except RenderError as exc:
                        raise ConfigError(f"{self.templates_dir / locale}: {template_id} "
                                          f"fails on sample advice {advice.request_id}: "
                                          f"{exc}") from exc

    def resolve_locale(self, template_id: str, locale: str | None) -> str:
        """The first locale in the fallback chain of ``locale`` that has ``template_id``."""
        locales = self._available.get(template_id)
        if not locales:
            raise RenderError(f"unknown template {template_id!r}")
        for candidate in locale_chain(locale, root=ROOT_TEMPLATE_LOCALE):
            if candidate in locales:
                return candidate
        raise RenderError(f"template {template_id!r} has no {ROOT_TEMPLATE_LOCALE!r} version")

    def render(self, advice: RemittanceAdvice, *, template_id: str,
               locale: str | None = None) -> RenderedMessage:
        """Render ``template_id`` for ``advice`` in ``locale`` (default: the payee's).

        Amounts and dates follow the requested locale when the template is in its
        language (``de-AT`` → ``€ 1.234,56`` inside German text), and the template's
        own locale after a fallback (English text → English number style), so
        numbers never read differently from the sentence around them.

        Raises:
            RenderError: Unknown template id, or the advice cannot be rendered.
        """
        requested = normalize_tag(locale or advice.payee.locale or ROOT_TEMPLATE_LOCALE)
        locale_used = self.resolve_locale(template_id, requested)
        same_language = requested.split("-")[0] == locale_used.split("-")[0]
        return self._render_in(advice, template_id, locale_used,
                               requested if same_language else locale_used)

    def _render_in(self, advice: RemittanceAdvice, template_id: str, locale_used: str,
                   format_locale: str) -> RenderedMessage:
        context: dict[str, Any] = {
            "advice": advice, "payee": advice.payee, "invoices": advice.invoices,
            "settled": advice.partner_status == "SETTLED",
            "returned": advice.partner_status == "RETURNED",
            "rejected": advice.partner_status == "REJECTED",
            FORMAT_LOCALE_VAR: format_locale, "html_lang": locale_used,
        }
        base = f"{locale_used}/{template_id}"
        try:
            subject = _one_line(self._env.get_template(f"{base}.subject.txt").render(context))
            text = self._env.get_template(f"{base}.txt").render(context).strip() + "\n"
            html = self._env.get_template(f"{base}.html").render(
                {**context, "subject": subject})
        except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
            raise RenderError(f"{base}: {type(exc).__name__}: {exc}") from exc
        return RenderedMessage(subject=subject, text=text, html=html,
                               locale_used=locale_used, template_id=template_id)


def sample_advices() -> list[RemittanceAdvice]:
    """Advices exercising both branches of every optional field (used by the smoke test)."""
    full = RemittanceAdvice(
        request_id="REQ-SAMPLE-1", payment_id="PAY-SAMPLE-1", partner="SAMPLEBANK",
        partner_status="SETTLED", payment_method="SEPA", amount=Decimal("1234.56"),
        currency="EUR", minor_units=2, value_date="2026-11-24",
        occurred_at="2026-11-24T09:00:00+01:00", partner_reference="E2E-SAMPLE",
        purpose="invoice_payment",
        payee=AdvicePayee(payee_id="PAYEE-S", name="Sample & <Co>", email="s@example.com",
                          payee_type="business", country="DE", locale="en",
                          account_last4="1234"),
        invoices=[AdviceInvoice(invoice_id="INV-S1", amount=Decimal("1234.56"), currency="EUR",
                                description="Sample <invoice>", purpose="invoice_payment")],
        enriched_at="2026-11-24T09:00:01+00:00")
    bare = RemittanceAdvice(
        request_id="REQ-SAMPLE-2", partner="SAMPLEBANK", partner_status="RETURNED",
        payment_method="WIRE", amount=Decimal("150000"), currency="JPY", minor_units=0,
        occurred_at="2026-11-25T01:30:00Z", purpose="royalty",
        payee=AdvicePayee(payee_id="PAYEE-T", name="T", payee_type="tax_authority",
                          country="JP"),
        invoices=[], enriched_at="2026-11-25T01:30:01Z")
    rejected = bare.model_copy(update={"partner_status": "REJECTED", "request_id": "REQ-SAMPLE-3"})
    return [full, bare, rejected]
