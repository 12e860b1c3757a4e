"""A human-readable preview of the notification a payee would get for an advice.

It runs the real rules and the real renderer (with their start-up checks), and for
webhooks builds the real body; it never contacts anyone and never sees a secret:
the signature header is shown as a placeholder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from services.notification.render import Renderer
from services.notification.rules import DEFAULT_RULES_PATH, DEFAULT_TEMPLATES_DIR, RuleSet
from services.notification.webhook import USER_AGENT, build_body, webhook_id_for
from shared.domain.advice import RemittanceAdvice
from shared.pii import mask_url

SIGNATURE_PLACEHOLDER = "v1,<HMAC-SHA256 computed at delivery with the payee's secret>"


def _section(title: str, body: str) -> str:
    return f"--- {title} " + "-" * max(3, 60 - len(title)) + "\n" + body.rstrip("\n") + "\n"


def preview(advice: RemittanceAdvice, *, rules_path: str | Path | None = None,
            templates_dir: str | Path | None = None, now: int | None = None,
            webhook_url: str | None = None) -> str:
    """What ``advice``'s payee would receive, as plain text.

    Args:
        advice: The enriched advice.
        rules_path: Rules file (default: the packaged ``rules.yaml``).
        templates_dir: Templates (default: the packaged ``templates/``).
        now: Unix time shown as ``webhook-timestamp`` (default: the current time).
        webhook_url: The payee's receiver from the directory (the advice has none);
            shown with its path and query masked.

    Raises:
        ConfigError: The rules or templates are invalid.
        RenderError: The advice cannot be rendered.
    """
    tdir = Path(templates_dir or DEFAULT_TEMPLATES_DIR)
    rules = RuleSet.load(rules_path or DEFAULT_RULES_PATH, templates_dir=tdir)
    renderer = Renderer.load(tdir, rules)
    choice = rules.choose(advice)
    message = renderer.render(advice, template_id=choice.template_id)
    payee = advice.payee
    channel_note = ("payee's preference" if choice.channel == payee.channel
                    else f"rule override; payee prefers {payee.channel}")
    locale_note = "" if message.locale_used == payee.locale else f" (payee: {payee.locale})"
    lines = [
        f"Notification preview for {advice.request_id} ({advice.partner_status})",
        f"  payee:     {payee.name} [{payee.payee_id}, {payee.payee_type}, {payee.country}]",
        f"  channel:   {choice.channel} ({channel_note})",
        f"  rule:      {choice.rule_name}",
        f"  template:  {message.template_id}",
        f"  locale:    {message.locale_used}{locale_note}",
    ]
    warnings: list[str] = []
    if choice.channel == "email":
        lines.append(f"  to:        {payee.email or '(none)'}")
        if not payee.email:
            warnings.append("payee has no email address: the email cannot be sent")
    else:
        lines.append(f"  to:        POST {mask_url(webhook_url) or '(none)'}")
        if not webhook_url:
            warnings.append("payee has no webhook_url: the webhook cannot be sent")
    lines.extend(f"  WARNING:   {w}" for w in warnings)
    out = ["\n".join(lines) + "\n",
           _section("subject", message.subject),
           _section("text body", message.text),
           _section("html body", f"({len(message.html)} characters, "
                    f"{message.locale_used}/{message.template_id}.html)")]
    if choice.channel == "webhook":
        payload = advice.model_dump(mode="json")
        body = build_body(payload)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": webhook_id_for(advice.request_id),
            "webhook-timestamp": str(int(time.time()) if now is None else now),
            "webhook-signature": SIGNATURE_PLACEHOLDER,
        }
        pretty = json.dumps(json.loads(body), ensure_ascii=False, indent=2)
        out.append(_section("webhook headers", "\n".join(f"{k}: {v}" for k, v in headers.items())))
        out.append(_section(f"webhook body ({len(body)} bytes, sent compact)", pretty))
    return "\n".join(out)
