"""The partner notification: the input contract (``docs/architecture.md``, "Partner input")."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.domain.money import MoneyError, is_known_currency, parse_amount
from shared.pipeline.jobs import REQUEST_ID_PATTERN

_AMOUNT = re.compile(r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,3})?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("contains control characters")
    return value


class PartnerNotification(BaseModel):
    """A banking partner's payment confirmation.

    Core fields are validated strictly; any other field is kept in ``extras``
    (schema flexibility: partners add fields, we never reject them for it).
    """

    model_config = ConfigDict(extra="allow", frozen=True, str_strip_whitespace=False)

    schema_version: Literal["1"] = "1"
    request_id: str = Field(min_length=1, max_length=128, pattern=REQUEST_ID_PATTERN)
    payment_id: str | None = Field(default=None, max_length=128)
    partner: str = Field(pattern=r"^[A-Z0-9_]{2,32}$")
    status: Literal["SETTLED", "REJECTED", "RETURNED"]
    payment_method: Literal["ACH", "WIRE", "SEPA", "SWIFT", "RTP", "CHECK"]
    amount: Decimal
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    payee_id: str = Field(min_length=1, max_length=128)
    invoice_ids: list[str] = Field(min_length=1, max_length=100)
    value_date: date | None = None
    partner_reference: str | None = Field(default=None, max_length=256)
    occurred_at: datetime

    @field_validator("amount", mode="before")
    @classmethod
    def _amount_is_string(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("must be a decimal string, e.g. \"1250.00\" (floats lose cents)")
        if not _AMOUNT.match(value):
            raise ValueError("must be a positive decimal string with at most 3 fraction digits")
        return value

    @field_validator("payee_id", "payment_id", "partner_reference")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return None if value is None else _no_control(value)

    @field_validator("invoice_ids")
    @classmethod
    def _invoice_ids(cls, value: list[str]) -> list[str]:
        for item in value:
            if not 1 <= len(item) <= 128:
                raise ValueError("each invoice id must have 1 to 128 characters")
            _no_control(item)
        if len(set(value)) != len(value):
            raise ValueError("invoice ids must be unique")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a time zone offset")
        return value

    @model_validator(mode="after")
    def _currency_and_units(self) -> PartnerNotification:
        if not is_known_currency(self.currency):
            raise ValueError(f"unknown currency {self.currency!r}")
        try:
            parse_amount(str(self.amount), self.currency)
        except MoneyError as exc:
            raise ValueError(str(exc)) from exc
        return self

    @property
    def extras(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
