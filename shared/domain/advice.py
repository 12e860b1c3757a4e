"""The enriched remittance advice: what enrichment publishes and notification consumes.

It is a versioned document (``advice_version``). Amounts are decimal strings with
exactly the currency's minor units. Secrets (webhook secrets) and full account
numbers never appear in it: the notification service looks the secret up itself.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

ADVICE_VERSION: Final = "1"

PayeeType = Literal["individual", "business", "author", "developer", "utility", "tax_authority"]
Purpose = Literal["invoice_payment", "royalty", "refund", "tax", "utility_bill"]
PartnerStatus = Literal["SETTLED", "REJECTED", "RETURNED"]
Channel = Literal["email", "webhook"]


class AdvicePayee(BaseModel):
    model_config = ConfigDict(frozen=True)

    payee_id: str
    name: str
    email: str | None = None
    payee_type: PayeeType
    country: str
    locale: str = "en"
    channel: Channel = "email"
    # No webhook_url: the notification service reads it from the payee directory at
    # delivery (docs/architecture.md); advices stored before this ignore theirs.
    account_last4: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{4}$")


class AdviceInvoice(BaseModel):
    model_config = ConfigDict(frozen=True)

    invoice_id: str
    amount: Decimal
    currency: str
    description: str = ""
    purpose: Purpose


class RemittanceAdvice(BaseModel):
    """One payment, explained to its payee: the partner's confirmation plus who and what for."""

    model_config = ConfigDict(frozen=True)

    advice_version: Literal["1"] = "1"
    request_id: str
    payment_id: str | None = None
    partner: str
    partner_status: PartnerStatus
    payment_method: str
    amount: Decimal
    currency: str
    minor_units: int
    value_date: str | None = None
    occurred_at: str
    partner_reference: str | None = None
    purpose: Purpose
    payee: AdvicePayee
    invoices: list[AdviceInvoice]
    extras: dict[str, Any] = Field(default_factory=dict)
    enriched_at: str

    def message_attributes(self) -> dict[str, str]:
        """Attributes published with the advice, for SNS filter policies."""
        return {
            "payee_type": self.payee.payee_type,
            "purpose": self.purpose,
            "country": self.payee.country,
            "channel": self.payee.channel,
            "partner_status": self.partner_status,
        }
