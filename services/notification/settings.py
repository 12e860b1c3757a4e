"""What only the notification service reads, on top of the core (shared/settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.settings import Settings


class NotificationSettings(Settings):
    """E-mail and webhook delivery, unknown e-mail outcomes, endpoint health, SES events."""

    sender_email: str = "remittances@example.com"
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_allow_private: bool = False
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
