"""The payee's webhook URL stays in the directory: the advice (SNS, the notification
job, ``GET /v1/remittances``, the console) never carries it."""

from __future__ import annotations

import json
import uuid

from services.enrichment.handler import enrich
from services.enrichment.models import PartnerNotification
from shared.aws.dynamo import to_item
from shared.domain.directory import PayeeDirectory
from tests.helpers import Env, message

SECRET_PATH = "/in/t0ken-9f8e7d6c?sig=s3cr3t"


async def test_a_webhook_payees_url_is_not_copied_into_the_advice(env: Env) -> None:
    payee_id, invoice_id = f"PAYEE-{uuid.uuid4().hex[:8]}", f"INV-{uuid.uuid4().hex[:8]}"
    await env.clients.dynamodb.put_item(TableName=env.names.payees, Item=to_item({
        "payee_id": payee_id, "name": "Hook Payee", "email": "ap@hook.example",
        "payee_type": "business", "country": "DE", "locale": "de-DE", "channel": "webhook",
        "webhook_url": f"https://hooks.payee.example{SECRET_PATH}",
        "webhook_secret": "whsec_cmVtaXRmbG93LWRlbW8td2ViaG9vay1zZWNyZXQtMzJi"}))
    await env.clients.dynamodb.put_item(TableName=env.names.invoices, Item=to_item({
        "invoice_id": invoice_id, "payee_id": payee_id, "amount": "10.00", "currency": "EUR",
        "description": "x", "purpose": "invoice_payment"}))
    body = dict(message(f"REQ-{uuid.uuid4().hex}"), payee_id=payee_id,
                invoice_ids=[invoice_id], amount="10.00", currency="EUR")
    directory = PayeeDirectory.for_prefix(env.clients.dynamodb, env.settings.prefix)
    advice = await enrich(PartnerNotification.model_validate_json(json.dumps(body)),
                          directory=directory)
    text = advice.model_dump_json()
    assert advice.payee.channel == "webhook"
    assert "hooks.payee.example" not in text and "s3cr3t" not in text, text
