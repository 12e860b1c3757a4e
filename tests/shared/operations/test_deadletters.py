"""Dead letters through ``/v1/deadletters`` (the module the console uses too)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.enrichment.service import build as enrichment
from shared.aws.names import Names
from tests.helpers import CONSOLE_TOKEN as TOKEN
from tests.helpers import Env, console, eventually, job_in, message, running

pytestmark = pytest.mark.own_stack("peeks, replays and deletes every dead letter of a queue")

AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def dead_letter(env: Env, body: str, reason: str, **extra: str) -> None:
    dlq = await env.queue_url(Names.dlq(env.names.remittance_events))
    attrs: dict[str, Any] = {f"remitflow.{k}": {"DataType": "String", "StringValue": v}
                             for k, v in {"reason": reason, "detail": "test", **extra}.items()}
    await env.clients.sqs.send_message(QueueUrl=dlq, MessageBody=body, MessageAttributes=attrs)


async def test_peek_view_replay_and_delete(env: Env) -> None:
    dlq = Names.dlq(env.names.remittance_events)
    good = message("REQ-DLQ-REPLAY")
    await dead_letter(env, json.dumps(good), "schema")
    await dead_letter(env, '{"iban": "DE89370400440532013000", "acct": "123456789012"}',
                      "invalid_json")
    await dead_letter(env, "not json at all", "invalid_json")
    async with console(env) as http, running(env, enrichment):
        depths = (await http.get("/v1/deadletters", headers=AUTH)).json()["queues"]
        mine = next(d for d in depths if d["queue"] == dlq)
        assert mine["visible"] == 3 and mine["oldest_age_s"] is not None
        assert mine["source"] == env.names.remittance_events

        peek = (await http.get(f"/v1/deadletters/{dlq}", headers=AUTH)).json()["messages"]
        assert sorted(m["reason"] for m in peek) == ["invalid_json", "invalid_json", "schema"]
        again = (await http.get(f"/v1/deadletters/{dlq}", headers=AUTH)).json()["messages"]
        assert len(again) == 3  # peeking consumed nothing

        secret = next(m for m in peek if "iban" not in m["detail"] and m["size"] > 40
                      and m["reason"] == "invalid_json")
        body = (await http.get(f"/v1/deadletters/{dlq}/messages/{secret['message_id']}",
                               headers=AUTH)).json()["body"]
        assert "DE89370400440532013000" not in body and "123456789012" not in body
        assert "…3000" in body and "…9012" in body

        schema = next(m for m in peek if m["reason"] == "schema")
        replay = await http.post(f"/v1/deadletters/{dlq}/replay", headers=AUTH,
                                 json={"message_ids": [schema["message_id"]]})
        assert replay.status_code == 200, replay.text
        assert replay.json()["done"] == [schema["message_id"]] and replay.json()["before"] == 3
        await job_in(env.store(), "REQ-DLQ-REPLAY", "RUNNING", "COMPLETED", timeout_s=30)

        deleted = await http.post(f"/v1/deadletters/{dlq}/delete", headers=AUTH,
                                  json={"reason": "invalid_json"})
        assert len(deleted.json()["done"]) == 2

        async def empty() -> bool:
            left = (await http.get(f"/v1/deadletters/{dlq}", headers=AUTH)).json()["messages"]
            return not left

        await eventually(empty, timeout_s=10, what="DLQ empty")
        bad = await http.post(f"/v1/deadletters/{dlq}/delete", headers=AUTH, json={})
        assert bad.status_code == 400
        assert (await http.get("/v1/deadletters/nope-dlq", headers=AUTH)).status_code == 404
        assert (await http.get("/v1/deadletters")).status_code == 401
