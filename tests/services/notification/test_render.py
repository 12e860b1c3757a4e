"""Templates: every template x locale renders, goldens, fallback, escaping, fail-fast load."""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from services.notification.render import Renderer, RenderError
from services.notification.rules import DEFAULT_TEMPLATES_DIR, ConfigError, RuleSet
from shared.domain.advice import RemittanceAdvice
from tests.services.notification.support import (
    make_advice,
    make_invoice,
    make_payee,
    make_usd_author_advice,
)

GOLDEN = Path(__file__).parent / "golden"
LOCALES = ["en", "de", "fr", "ja", "pt-BR"]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer.load(DEFAULT_TEMPLATES_DIR, RuleSet.load())


def _all_templates() -> list[tuple[str, str]]:
    loaded = Renderer.load(DEFAULT_TEMPLATES_DIR, smoke_test=False)
    return [(t, loc) for t in sorted(loaded.template_ids) for loc in sorted(loaded.locales_for(t))]


def _advice(status: str) -> RemittanceAdvice:
    return make_advice(partner_status=status, invoices=[
        make_invoice(),
        make_invoice(invoice_id="INV-2002", amount=Decimal("0.00"),
                     description="Credit note adjustment")])


def test_required_templates_exist_in_every_locale(renderer: Renderer) -> None:
    for template_id in ("payment_settled", "payment_returned"):
        assert renderer.locales_for(template_id) == frozenset(LOCALES)
    assert RuleSet.load().template_ids <= renderer.template_ids


@pytest.mark.parametrize("status", ["SETTLED", "RETURNED", "REJECTED"])
@pytest.mark.parametrize(("template_id", "locale"), _all_templates())
def test_every_template_renders(renderer: Renderer, template_id: str, locale: str,
                                status: str) -> None:
    advice = _advice(status)
    msg = renderer.render(advice, template_id=template_id, locale=locale)
    assert msg.locale_used == locale
    assert msg.template_id == template_id
    assert msg.subject and "\n" not in msg.subject
    assert msg.text.endswith("\n") and not msg.text.endswith("\n\n")
    for part in (msg.text, msg.html):
        assert "Brandt Software GmbH" in part
        assert "•••• 4321" in part
        assert "REQ-2026-000002" in part
        assert "E2E-5Q1X" in part
        assert "INV-2001" in part and "App store revenue share October" in part
        assert "Credit note adjustment" in part
    assert "1234.56" not in msg.text  # always locale-formatted, never the raw decimal
    assert msg.html.lstrip().startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale}">' in msg.html


@pytest.mark.parametrize(("template_id", "locale"), _all_templates())
def test_minimal_advice_renders(renderer: Renderer, template_id: str, locale: str) -> None:
    advice = make_advice(payee=make_payee(account_last4=None, email=None),
                         value_date=None, partner_reference=None, payment_id=None, invoices=[])
    msg = renderer.render(advice, template_id=template_id, locale=locale)
    assert "••••" not in msg.text and "None" not in msg.text and "None" not in msg.html


def test_amount_and_date_in_payee_locale(renderer: Renderer) -> None:
    msg = renderer.render(make_advice(), template_id="payment_settled")
    assert msg.locale_used == "de"
    assert "1.234,56\xa0€" in msg.text and "24. November 2026" in msg.text
    assert msg.subject == "Zahlung ausgeführt: 1.234,56\xa0€ am 24.11.2026"
    jpy = make_advice(currency="JPY", minor_units=0, amount=Decimal("150000"),
                      payee=make_payee(locale="ja-JP", country="JP"),
                      invoices=[make_invoice(currency="JPY", amount=Decimal("150000"))])
    ja = renderer.render(jpy, template_id="payment_settled")
    assert ja.locale_used == "ja" and "￥150,000" in ja.text and "2026年11月24日" in ja.text


@pytest.mark.parametrize(("payee_locale", "template_id", "used", "amount"), [
    ("de-AT", "payment_settled", "de", "€\xa01.234,56"),     # Austrian number style
    ("pt-BR", "payment_returned", "pt-BR", "€\xa01.234,56"),
    ("ja-JP", "payment_settled", "ja", "€1,234.56"),
    ("fr-CA", "payment_settled", "fr", "1\xa0234,56\xa0€"),
    ("es-MX", "payment_settled", "en", "€1,234.56"),          # no Spanish: English
    ("de-DE", "royalty_settled", "de", "1.234,56\xa0€"),      # every template in every locale
    ("pt-PT", "payment_settled", "en", "€1,234.56"),          # only pt-BR exists
])
def test_locale_fallback(renderer: Renderer, payee_locale: str, template_id: str, used: str,
                         amount: str) -> None:
    advice = make_advice(payee=make_payee(locale=payee_locale))
    msg = renderer.render(advice, template_id=template_id)
    assert msg.locale_used == used
    assert amount in msg.text


def test_explicit_locale_beats_payee_locale(renderer: Renderer) -> None:
    msg = renderer.render(make_advice(), template_id="payment_settled", locale="fr")
    assert msg.locale_used == "fr" and msg.text.startswith("Bonjour")


def test_html_escapes_payee_data(renderer: Renderer) -> None:
    evil = "<script>alert('x')</script> & Co"
    advice = make_advice(payee=make_payee(name=evil), invoices=[
        make_invoice(description='<img src=x onerror="steal()">')])
    for locale in LOCALES:
        msg = renderer.render(advice, template_id="payment_settled", locale=locale)
        assert "<script>" not in msg.html and "<img" not in msg.html
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Co" in msg.html
        assert "&lt;img src=x onerror=&#34;steal()&#34;&gt;" in msg.html
        assert evil in msg.text  # plain text is not HTML: shown as written


def test_unknown_template_id(renderer: Renderer) -> None:
    with pytest.raises(RenderError, match="unknown template"):
        renderer.render(make_advice(), template_id="nope")


@pytest.mark.parametrize(("name", "advice", "template_id"), [
    ("en_payment_settled", make_usd_author_advice(payee=make_payee(
        payee_id="PAYEE-0001", name="Ada Lovelace Books LLC", payee_type="author",
        country="US", locale="en-US", account_last4="6789")), "payment_settled"),
    ("en_royalty_settled", make_usd_author_advice(), "royalty_settled"),
    ("de_payment_settled", make_advice(), "payment_settled"),
    ("de_payment_returned", make_advice(partner_status="RETURNED"), "payment_returned"),
])
def test_golden(renderer: Renderer, name: str, advice: RemittanceAdvice,
                template_id: str) -> None:
    msg = renderer.render(advice, template_id=template_id)
    actual = f"Subject: {msg.subject}\n\n{msg.text}"
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1"
    assert actual == path.read_text(encoding="utf-8")


# --- fail fast at load ----------------------------------------------------------------------

@pytest.fixture
def templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES_DIR, target)
    return target


def test_copy_loads(templates: Path) -> None:
    """The fixture's copy is a faithful one: the failures below come from the edits."""
    copy = Renderer.load(templates, RuleSet.load(templates_dir=templates))
    shipped = Renderer.load(DEFAULT_TEMPLATES_DIR, smoke_test=False)
    assert copy.template_ids == shipped.template_ids and "payment_settled" in copy.template_ids
    assert all(copy.locales_for(t) == shipped.locales_for(t) for t in shipped.template_ids)


def test_an_unchanged_directory_is_compiled_once_and_a_changed_one_again(
        templates: Path) -> None:
    """A second build of the service in one process reuses the compiled templates;
    any edit (even one keeping the size) compiles again, and a broken edit fails."""
    first = Renderer.load(templates)
    assert Renderer.load(templates) is first
    text = templates / "en" / "payment_settled.subject.txt"
    original = text.read_text()
    edited = original.replace("Payment sent", "Payment made")
    assert edited != original and len(edited) == len(original)
    text.write_text(edited)
    os.utime(text, ns=(text.stat().st_atime_ns, text.stat().st_mtime_ns + 1_000_000))
    assert Renderer.load(templates) is not first, "an edit is compiled again"
    text.write_text("{{ payee.name }\n")
    with pytest.raises(ConfigError, match=r"en/payment_settled\.subject\.txt:1"):
        Renderer.load(templates)


def test_syntax_error_names_file(templates: Path) -> None:
    (templates / "fr" / "payment_settled.txt").write_text("Bonjour {{ payee.name }\n")
    with pytest.raises(ConfigError, match=r"fr/payment_settled\.txt:1"):
        Renderer.load(templates)


def test_undefined_variable_fails_at_load(templates: Path) -> None:
    (templates / "ja" / "payment_returned.txt").write_text("{{ payee.nickname }}\n")
    with pytest.raises(ConfigError, match=r"payment_returned.*nickname"):
        Renderer.load(templates)


def test_unknown_filter_fails_at_load(templates: Path) -> None:
    (templates / "de" / "payment_settled.subject.txt").write_text("{{ advice.amount|euros }}")
    with pytest.raises(ConfigError, match="euros"):
        Renderer.load(templates)


def test_missing_part_fails_at_load(templates: Path) -> None:
    (templates / "de" / "payment_settled.html").unlink()
    with pytest.raises(ConfigError, match=r"payment_settled\.html"):
        Renderer.load(templates)


def test_rules_template_missing_in_en(templates: Path) -> None:
    rules = RuleSet.load(templates_dir=templates)
    for part in ("subject.txt", "txt", "html"):
        (templates / "en" / f"royalty_settled.{part}").unlink()
    with pytest.raises(ConfigError, match="royalty_settled"):
        Renderer.load(templates, rules)
    with pytest.raises(ConfigError, match=r"rules\[2\].*unknown template 'royalty_settled'"):
        RuleSet.load(templates_dir=templates)


def test_template_without_english_version(templates: Path) -> None:
    for part in ("subject.txt", "txt", "html"):
        (templates / "de" / f"dunning.{part}").write_text("x")
    with pytest.raises(ConfigError, match=r"'dunning'.*fallback locale"):
        Renderer.load(templates)


def test_stray_file_and_misspelt_locale(templates: Path, tmp_path: Path) -> None:
    (templates / "en" / "notes.md").write_text("x")
    with pytest.raises(ConfigError, match="unexpected file"):
        Renderer.load(templates)
    (templates / "en" / "notes.md").unlink()
    (templates / "pt-BR").rename(templates / "pt-br")
    with pytest.raises(ConfigError, match="pt-BR"):
        Renderer.load(templates)


def test_sandbox_blocks_unsafe_attributes(templates: Path) -> None:
    (templates / "en" / "payment_settled.txt").write_text(
        "{{ advice.__class__.__init__.__globals__ }}\n")
    with pytest.raises(ConfigError, match="payment_settled"):
        Renderer.load(templates)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Renderer.load(tmp_path / "nowhere")


def test_subject_is_one_line(renderer: Renderer) -> None:
    advice = make_advice(partner_reference="REF-1\r\nBcc: victim@example.com\u2028x",
                         payee=make_payee(payee_type="tax_authority"))
    msg = renderer.render(advice, template_id="tax_settled", locale="en")
    assert msg.subject == ("Tax payment of €1,234.56 made, reference "
                           "REF-1 Bcc: victim@example.com x")
