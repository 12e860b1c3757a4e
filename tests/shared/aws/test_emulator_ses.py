"""The embedded emulator publishes SES's sending events, as SES does.

Through the session's emulator (``python -m tools.cli emulator``) over HTTP: an
e-mail sent with the stack's configuration set produces a ``Send`` and a
``Delivery`` event on the configuration set's SNS destination (the stack's
``ses-events`` queue) in SES's format with the message's tags, which the
notification service's parser reads; creating the destination published SES's
validation notice; an e-mail without a configuration set, or one SES refuses,
publishes nothing.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from services.notification.ses_events import VALIDATION_MESSAGE, SesEvent
from tests.helpers import Env

SENDER = "remittances@example.com"


async def send(env: Env, to: str, **extra: Any) -> str:
    resp = await env.clients.ses.send_email(
        Source=SENDER, Destination={"ToAddresses": [to]},
        Message={"Subject": {"Data": "Your remittance"}, "Body": {"Text": {"Data": "hi"}}},
        **extra)
    return str(resp["MessageId"])


async def test_accepted_email_publishes_send_then_delivery(fresh_env: Env) -> None:
    env = fresh_env
    events = env.names.name("ses-events")
    request_id = f"REQ-{uuid.uuid4().hex[:12]}"
    message_id = await send(env, "payee@example.org", ConfigurationSetName=events,
                            Tags=[{"Name": "request_id", "Value": request_id},
                                  {"Name": "attempt", "Value": "2"}])
    await send(env, "other@example.org")                       # no configuration set
    bodies = [m["Body"] for m in await env.drain(events, wait_s=5)]
    assert VALIDATION_MESSAGE in bodies, "SES validated the topic when bootstrap created it"
    raw = [json.loads(b) for b in bodies if b != VALIDATION_MESSAGE]
    assert sorted(e["eventType"] for e in raw) == ["Delivery", "Send"]
    for event in raw:
        assert event["mail"]["messageId"] == message_id
        assert event["mail"]["destination"] == ["payee@example.org"]
        assert event["mail"]["source"] == SENDER
        assert event["mail"]["tags"]["ses:configuration-set"] == [events]
        assert event["mail"]["tags"]["request_id"] == [request_id]
        assert SesEvent.parse(json.dumps(event)) == SesEvent(event["eventType"], message_id,
                                                             request_id, 2)
    delivery = next(e for e in raw if e["eventType"] == "Delivery")
    assert delivery["delivery"]["recipients"] == ["payee@example.org"]
    assert "send" in next(e for e in raw if e["eventType"] == "Send")


async def test_refused_email_publishes_nothing(fresh_env: Env) -> None:
    env = fresh_env
    events = env.names.name("ses-events")
    await env.drain(events, wait_s=2)                          # the validation notice
    try:
        await env.clients.ses.send_email(
            Source="nobody@unverified.example", Destination={"ToAddresses": ["p@example.org"]},
            Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}},
            ConfigurationSetName=events)
    except Exception as exc:
        assert "MessageRejected" in str(exc)
    else:
        raise AssertionError("SES accepted an unverified sender")
    assert await env.drain(events, wait_s=2) == []


async def test_the_mailbox_holds_each_accepted_email_once(env: Env) -> None:
    """``GET /_aws/ses`` (the tests' and the soak's mailbox) lists what moto's own
    ``/moto-api/data.json`` lists, read from SES's backend instead of every model."""
    import httpx

    from shared.aws.emulator import sent_emails

    marker = uuid.uuid4().hex
    message_id = await env.clients.ses.send_email(
        Source=SENDER, Destination={"ToAddresses": ["payee@example.org"]},
        Message={"Subject": {"Data": "Your remittance"},
                 "Body": {"Text": {"Data": f"hello {marker}"}}})
    mine = [m for m in sent_emails(env.endpoint) if marker in m["body"]]
    assert [m["id"] for m in mine] == [message_id["MessageId"]]
    assert mine[0]["source"] == SENDER and mine[0]["subject"] == "Your remittance"
    assert mine[0]["destinations"]["ToAddresses"] == ["payee@example.org"]
    async with httpx.AsyncClient(timeout=30) as http:
        moto_own = (await http.get(f"{env.endpoint}/moto-api/data.json")).json()
    assert ({m["id"] for m in sent_emails(env.endpoint)}
            == {m["id"] for m in moto_own["ses"]["Message"]})
