"""Rules: first match wins, regions, default, channel override, and load-time validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.notification.rules import ConfigError, RuleSet
from tests.services.notification.support import make_advice, make_payee, make_usd_author_advice

KNOWN = {"payment_settled", "payment_returned", "royalty_settled", "tax_settled"}


def ruleset(doc: dict[str, Any]) -> RuleSet:
    return RuleSet.from_mapping(doc, source="test.yaml", known_templates=KNOWN)


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc, encoding="utf-8")
    return path


def test_shipped_rules() -> None:
    rules = RuleSet.load()
    assert rules.choose(make_advice()).template_id == "payment_settled"
    assert rules.choose(make_advice()).rule_name == "settled"
    royalty = rules.choose(make_usd_author_advice())
    assert (royalty.template_id, royalty.rule_name) == ("royalty_settled", "author-royalty")
    for status in ("RETURNED", "REJECTED"):
        choice = rules.choose(make_usd_author_advice(partner_status=status))
        assert choice.template_id == "payment_returned"
    tax = make_advice(payee=make_payee(payee_type="tax_authority"), purpose="tax")
    assert rules.choose(tax).template_id == "tax_settled"
    assert rules.choose(make_advice()).channel == "email"
    webhook_payee = make_payee(channel="webhook")
    assert rules.choose(make_advice(payee=webhook_payee)).channel == "webhook"


def test_first_match_wins() -> None:
    rules = ruleset({
        "rules": [
            {"name": "first", "payee_type": "developer", "template": "tax_settled"},
            {"name": "second", "payee_type": ["developer", "author"],
             "template": "royalty_settled"},
        ],
        "default": {"template": "payment_settled"},
    })
    assert rules.choose(make_advice()).rule_name == "first"
    assert rules.choose(make_usd_author_advice()).rule_name == "second"
    other = make_advice(payee=make_payee(payee_type="utility"))
    assert rules.choose(other).rule_name == "default"


def test_all_criteria_must_match() -> None:
    rules = ruleset({
        "rules": [{"name": "r", "payee_type": "author", "purpose": "royalty",
                   "partner_status": "SETTLED", "template": "royalty_settled"}],
        "default": {"name": "fallback", "template": "payment_settled"},
    })
    assert rules.choose(make_usd_author_advice()).rule_name == "r"
    assert rules.choose(make_usd_author_advice(purpose="refund")).rule_name == "fallback"
    assert rules.choose(make_usd_author_advice(partner_status="RETURNED")).rule_name == "fallback"


def test_regions_and_countries() -> None:
    rules = ruleset({
        "regions": {"EU": ["DE", "FR", "AT"], "APAC": ["JP", "SG"]},
        "rules": [
            {"name": "eu-or-swiss", "region": "EU", "country": "CH",
             "template": "tax_settled", "channel": "webhook"},
            {"name": "apac", "region": ["APAC"], "template": "royalty_settled"},
        ],
        "default": {"template": "payment_settled"},
    })
    for country, expected in [("DE", "eu-or-swiss"), ("AT", "eu-or-swiss"),
                              ("CH", "eu-or-swiss"), ("JP", "apac"), ("US", "default")]:
        advice = make_advice(payee=make_payee(country=country))
        assert rules.choose(advice).rule_name == expected, country
    override = rules.choose(make_advice())
    assert override.channel == "webhook"  # the rule's override beats the payee's "email"


@pytest.mark.parametrize(("doc", "message"), [
    ({"rules": [{"template": "payment_settled"}, {"template": "payment_settled",
                                                  "colour": "red"}],
      "default": {"template": "payment_settled"}}, r"rules\[1\].*colour"),
    ({"rules": [{"name": "x", "template": "no_such_template"}],
      "default": {"template": "payment_settled"}}, r"rules\[0\] \(x\).*unknown template"),
    ({"rules": [{"payee_type": "astronaut", "template": "payment_settled"}],
      "default": {"template": "payment_settled"}}, r"rules\[0\].*payee_type"),
    ({"rules": [{"partner_status": "settled", "template": "payment_settled"}],
      "default": {"template": "payment_settled"}}, r"rules\[0\].*partner_status"),
    ({"rules": [{"region": "MARS", "template": "payment_settled"}],
      "default": {"template": "payment_settled"}}, r"rules\[0\].*unknown region 'MARS'"),
    ({"rules": [{"country": "Germany", "template": "payment_settled"}],
      "default": {"template": "payment_settled"}}, r"rules\[0\].*country"),
    ({"rules": [{"channel": "sms", "template": "payment_settled"}],
      "default": {"template": "payment_settled"}}, r"rules\[0\].*channel"),
    ({"rules": [{"payee_type": [], "template": "payment_settled"}],
      "default": {"template": "payment_settled"}}, r"rules\[0\].*payee_type"),
    ({"rules": [{"name": "a", "template": "payment_settled"},
                {"name": "a", "template": "payment_settled"}],
      "default": {"template": "payment_settled"}}, r"rules\[1\].*duplicate"),
    ({"rules": []}, r"default"),
    ({"rules": [], "default": {"template": "payment_settled", "payee_type": "author"}},
     r"default.*payee_type"),
    ({"rules": [], "default": {"template": "../../etc/passwd"}}, r"default.*template id"),
    ({"regions": {"EU": ["DE", "XX"]}, "rules": [], "default": {"template": "payment_settled"}},
     r"region EU"),
    ({"rules": [], "default": {"template": "payment_settled"}, "extra": 1}, r"extra"),
])
def test_invalid_rules_fail_at_load(tmp_path: Path, doc: dict[str, Any], message: str) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError, match=message) as info:
        RuleSet.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["rules: [\n  - {template: x\n", "- just a list\n", ""])
def test_unparsable_rules_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=str(path)):
        RuleSet.load(path)


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        RuleSet.load(tmp_path / "nope.yaml")


def test_norway_problem_is_caught(tmp_path: Path) -> None:
    path = write(tmp_path, "regions:\n  EEA: [NO]\nrules: []\ndefault: {template: "
                           "payment_settled}\n")
    with pytest.raises(ConfigError, match=r"regions\.EEA"):
        RuleSet.load(path)
