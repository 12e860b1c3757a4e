"""What only the enrichment service reads, on top of the core (shared/settings)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.settings import Settings


class PartnerFileRules(BaseModel):
    """How one partner's bank files are read (docs/bankfiles.md, "Reference rules").

    Attributes:
        invoice_from_end_to_end: a transaction with neither a structured reference
            nor an invoice-like token in ``Ustrd`` takes its end-to-end id as the
            invoice id (for partners whose payers quote the invoice there).
        payee_map: bank creditor id (else name) → payee id; when set, creditors
            missing from it are rejected (``unknown_payee``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    invoice_from_end_to_end: bool = False
    payee_map: dict[str, str] | None = None


class EnrichmentSettings(Settings):
    """Partner files (S3 ObjectCreated -> SQS -> file intake; docs/bankfiles.md)."""

    partner_files_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    partner_files_checkpoint_every: int = Field(default=500, ge=1)
    partner_files_max_in_flight: int = Field(default=2, ge=1, le=32)
    partner_files_rules: dict[str, PartnerFileRules] = Field(
        default_factory=dict,
        description="per-partner reading rules, JSON keyed by partner code: "
                    '{"FIRSTBANK": {"invoice_from_end_to_end": true, "payee_map": '
                    '{"DE-CRED-1": "PAYEE-0002"}}}; see docs/bankfiles.md, Reference rules')
