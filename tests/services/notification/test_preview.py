"""Preview: what the payee would get, without sending anything or showing secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.notification.preview import preview
from services.notification.rules import ConfigError
from services.notification.webhook import webhook_id_for
from tests.services.notification.support import make_advice, make_payee, make_usd_author_advice


def test_email_preview() -> None:
    text = preview(make_advice())
    assert "channel:   email (payee's preference)" in text
    assert "rule:      settled" in text
    assert "template:  payment_settled" in text
    assert "locale:    de (payee: de-DE)" in text
    assert "to:        finance@brandt.example" in text
    assert "Zahlung ausgeführt: 1.234,56\xa0€ am 24.11.2026" in text
    assert "Guten Tag Brandt Software GmbH," in text
    assert "webhook" not in text


def test_royalty_preview_uses_rule() -> None:
    text = preview(make_usd_author_advice())
    assert "rule:      author-royalty" in text and "template:  royalty_settled" in text
    assert "locale:    en (payee: en-US)" in text


def test_webhook_preview_shows_body_and_headers_without_secret() -> None:
    payee = make_payee(payee_id="PAYEE-0003", name="Kaisha Utilities KK", payee_type="utility",
                       country="JP", locale="ja-JP", channel="webhook")
    advice = make_advice(payee=payee, request_id="REQ-2026-000003")
    text = preview(advice, now=1_700_000_000,
                   webhook_url="https://hooks.kaisha.example/remittance?key=s3cr3t")
    assert "channel:   webhook" in text
    assert "to:        POST https://hooks.kaisha.example/…" in text
    assert "remittance" not in text.split("to:", 1)[1].split("\n", 1)[0]
    assert "s3cr3t" not in text
    assert f"webhook-id: {webhook_id_for('REQ-2026-000003')}" in text
    assert "webhook-timestamp: 1700000000" in text
    assert "webhook-signature: v1,<HMAC-SHA256" in text
    assert "whsec_" not in text
    body = text.split("sent compact) ", 1)[1].split("\n", 1)[1]
    doc = json.loads(body)
    assert doc["type"] == "remittance.advice"
    assert doc["data"]["payee"]["name"] == "Kaisha Utilities KK"


def test_preview_warns_when_channel_cannot_be_used() -> None:
    text = preview(make_advice(payee=make_payee(channel="webhook")))
    assert "WARNING:   payee has no webhook_url" in text


def test_preview_with_custom_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: all-tax, template: tax_settled, channel: email}\n"
                     "default: {template: payment_settled}\n")
    text = preview(make_advice(), rules_path=rules)
    assert "rule:      all-tax" in text and "template:  tax_settled" in text
    rules.write_text("rules: []\n")
    with pytest.raises(ConfigError, match="default"):
        preview(make_advice(), rules_path=rules)
