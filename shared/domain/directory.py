"""Reference data lookups: one ``BatchGetItem`` for a payee and all its invoices."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.aws.dynamo import from_item
from shared.domain.reference import Invoice, Payee

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


PAYEES = "payees"
INVOICES = "invoices"
REFERENCE_TABLES: tuple[tuple[str, str], ...] = ((PAYEES, "payee_id"), (INVOICES, "invoice_id"))
"""``(short table name, partition key)`` of the reference data both services read."""


class PayeeDirectory:
    """Payees and their invoices, read by enrichment (to enrich) and notification (to reach)."""

    @classmethod
    def for_prefix(cls, dynamodb: DynamoDBClient, prefix: str) -> PayeeDirectory:
        return cls(dynamodb, f"{prefix}-{PAYEES}", f"{prefix}-{INVOICES}")

    def __init__(self, dynamodb: DynamoDBClient, payees_table: str, invoices_table: str) -> None:
        self.dynamodb = dynamodb
        self.payees_table = payees_table
        self.invoices_table = invoices_table

    async def lookup(self, payee_id: str, invoice_ids: list[str]
                     ) -> tuple[Payee | None, dict[str, Invoice]]:
        """Payee and invoices in one round trip (retrying unprocessed keys)."""
        request: dict[str, Any] = {
            self.payees_table: {"Keys": [{"payee_id": {"S": payee_id}}]},
        }
        if invoice_ids:
            request[self.invoices_table] = {
                "Keys": [{"invoice_id": {"S": i}} for i in invoice_ids]}
        payee: Payee | None = None
        invoices: dict[str, Invoice] = {}
        while request:
            resp = await self.dynamodb.batch_get_item(RequestItems=request)
            for item in resp.get("Responses", {}).get(self.payees_table, []):
                payee = Payee.model_validate(from_item(item))
            for item in resp.get("Responses", {}).get(self.invoices_table, []):
                invoice = Invoice.model_validate(from_item(item))
                invoices[invoice.invoice_id] = invoice
            request = dict(resp.get("UnprocessedKeys") or {})
        return payee, invoices

    async def payee(self, payee_id: str) -> Payee | None:
        resp = await self.dynamodb.get_item(TableName=self.payees_table,
                                            Key={"payee_id": {"S": payee_id}})
        item = resp.get("Item")
        return Payee.model_validate(from_item(item)) if item else None
