"""Reference data records: payees and invoices, read by both services.

Fields: ``docs/architecture.md``, "Reference data".
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from shared.domain.advice import Channel, PayeeType, Purpose


class Payee(BaseModel):
    """A row of ``remitflow-payees``. ``webhook_secret`` never leaves the services."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    payee_id: str
    name: str
    email: str | None = None
    payee_type: PayeeType
    country: str
    locale: str = "en"
    channel: Channel = "email"
    webhook_url: str | None = None
    webhook_secret: str | None = Field(default=None, repr=False)
    account_last4: str | None = None


class Invoice(BaseModel):
    """A row of ``remitflow-invoices``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    invoice_id: str
    payee_id: str
    amount: Decimal
    currency: str
    description: str = ""
    purpose: Purpose
