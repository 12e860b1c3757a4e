"""``make soak``: many remittances through the whole pipeline while processes get killed.

Runs like ``remitflow dev --no-demo`` (emulator in-process, each service its own OS
process, restarted when it dies), sends N remittances, and every few seconds
``kill -9``s a random service process. At the end it accounts for every
remittance and counts duplicate deliveries, then waits (up to a few visibility
timeouts) for every queue of the stack to be empty and prints what is left on each
(visible + in flight + delayed). An e-mail killed before SES was called can never be
settled by an SES event: the soak resolves those ``not_sent`` over the operator API, as
the runbook asks a person to, with evidence only the emulator has (its mailbox holds no
e-mail for the request). It exits non-zero if anything was lost, an e-mail went out
twice, a notification is still left ``FAILED`` for a human, or a queue (DLQs included)
still holds a message. Webhooks repeated under the same ``webhook-id``
are reported apart (``redelivered_webhooks``): the receiver drops them by that id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import sys
import time
from collections import Counter
from typing import Any

import httpx

from shared.aws.clients import AwsClients
from shared.aws.dynamo import from_item
from shared.aws.emulator import sent_emails
from shared.logs import configure_logging
from shared.settings import Settings
from tools.demo import generate_messages, send_messages
from tools.dev import LocalStack, Supervisor, stop_signals
from tools.ports import PortsTaken
from tools.stack import StackNames as Names
from tools.stack import service_ports

DONE_REMITTANCE = {"COMPLETED", "REJECTED", "FAILED"}
DONE_NOTIFICATION = {"SENT", "REJECTED", "FAILED"}


async def _scan(clients: AwsClients, table: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    async for page in clients.dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page.get("Items", []):
            row = from_item(item)
            out[row["request_id"]] = row
    return out


async def _queue_depths(clients: AwsClients, prefix: str) -> dict[str, int]:
    """Every queue of the stack: visible + in flight + delayed messages."""
    urls = (await clients.sqs.list_queues(QueueNamePrefix=f"{prefix}-")).get("QueueUrls", [])
    out: dict[str, int] = {}
    for url in urls:
        attrs = (await clients.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                          "ApproximateNumberOfMessagesNotVisible",
                                          "ApproximateNumberOfMessagesDelayed"]))["Attributes"]
        out[url.rsplit("/", 1)[-1]] = sum(int(v) for v in attrs.values())
    return out


async def _queues_left(clients: AwsClients, prefix: str, wait_s: float) -> dict[str, int]:
    """Wait up to ``wait_s`` for every queue to be empty; what is left on each."""
    deadline = time.monotonic() + wait_s
    while True:
        depths = await _queue_depths(clients, prefix)
        if not any(depths.values()) or time.monotonic() > deadline:
            return depths
        await asyncio.sleep(5)


async def _show_left(clients: AwsClients, queue: str) -> None:
    """Print what a few of the messages left on ``queue`` are (at the end of the run)."""
    url = (await clients.sqs.get_queue_url(QueueName=queue))["QueueUrl"]
    resp = await clients.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=5, WaitTimeSeconds=1, VisibilityTimeout=0,
        MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"])
    for m in resp.get("Messages", []):
        attrs = m.get("Attributes", {})
        age = time.time() - int(attrs.get("SentTimestamp", "0")) / 1000
        print(f"  left on {queue}: receives={attrs.get('ApproximateReceiveCount')} "
              f"age={age:.0f}s body={m.get('Body', '')[:160]!r}")


async def _send_paced(settings: Settings, messages: list[dict[str, Any]],
                      rate_per_s: float) -> None:
    """Partners send steadily, not all at once: ten at a time at ``rate_per_s``."""
    for start in range(0, len(messages), 10):
        chunk = messages[start:start + 10]
        await send_messages(settings, [json.dumps(m) for m in chunk])
        await asyncio.sleep(len(chunk) / rate_per_s)


def _per_request(endpoint: str) -> Counter[str]:
    """E-mails SES accepted, per request id (every e-mail names its request in its body)."""
    return Counter(found for m in sent_emails(endpoint)
                   for found in set(re.findall(r"REQ-SOAK-[0-9]+-[0-9]+", m["body"])))


def _unknown(row: dict[str, Any]) -> bool:
    return row.get("status") == "FAILED" and "unknown" in str(row.get("last_error", ""))


async def _resolve_unsent(clients: AwsClients, table: str, sweeper_url: str, token: str,
                          endpoint: str, wait_s: float) -> list[str]:
    """Do what the runbook asks of a person for an e-mail whose outcome is unknown, with
    the evidence only the emulator has: where SES's mailbox holds no e-mail for the
    request (killed between recording the intent and calling SES, so no SES event can
    ever settle it), resolve it ``not_sent`` over the operator API, which sends it once
    more; then wait for those to be ``SENT``. Production has no such evidence, so there
    this stays a person's decision (docs/runbook.md, "failed-jobs")."""
    mailed = _per_request(endpoint)
    unsent = [r for r, row in (await _scan(clients, table)).items()
              if r.startswith("REQ-SOAK-") and _unknown(row) and not mailed.get(r)]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=sweeper_url, headers=headers, timeout=30) as http:
        for request_id in unsent:
            resp = await http.post(f"/v1/jobs/notifications/{request_id}/resolve", json={
                "outcome": "not_sent",
                "note": "make soak: the emulator's mailbox holds no e-mail for it"})
            print(f"  resolved not_sent {request_id}: {resp.status_code}", flush=True)
    deadline = time.monotonic() + wait_s
    while unsent and time.monotonic() < deadline:
        rows = await _scan(clients, table)
        if all(rows.get(r, {}).get("status") in DONE_NOTIFICATION - {"FAILED"} for r in unsent):
            break
        await asyncio.sleep(5)
    return unsent


async def soak(count: int, kill_every_s: float, timeout_s: float, endpoint: str,
               sup: Supervisor, receiver: Any, rate_per_s: float = 5.0,
               sweeper_url: str = "http://127.0.0.1:8083") -> int:
    settings = Settings()
    names = Names(settings.prefix)
    messages = generate_messages(count, prefix="REQ-SOAK")
    ids = {m["request_id"] for m in messages}
    started = time.monotonic()
    sender = asyncio.create_task(_send_paced(settings, messages, rate_per_s))
    kills: Counter[str] = Counter()
    next_kill = time.monotonic() + kill_every_s
    async with AwsClients(settings) as clients:
        while True:
            sup.check()
            if time.monotonic() >= next_kill:
                victim = random.choice(list(sup.procs))
                proc = sup.procs[victim]
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    kills[victim] += 1
                next_kill = time.monotonic() + random.uniform(kill_every_s / 2, kill_every_s * 1.5)
            rem = await _scan(clients, names.remittances)
            notif = await _scan(clients, names.notifications)
            settled = [r for r in ids if rem.get(r, {}).get("status") in DONE_REMITTANCE
                       and (rem[r]["status"] != "COMPLETED"
                            or notif.get(r, {}).get("status") in DONE_NOTIFICATION)]
            elapsed = time.monotonic() - started
            print(f"{elapsed:6.0f}s settled {len(settled)}/{count}  kills {dict(kills)}",
                  flush=True)
            if (sender.done() and len(settled) == count) or elapsed > timeout_s:
                break
            await asyncio.sleep(10)   # a scan of both tables is not free for the emulator
        await sender
        # The kills are over; a service killed in the last round is started again, or
        # what the steps below leave for it (the resolved e-mails' tasks) waits forever.
        sup.check()
        # Killed before SES was called: no SES event can come; the operator's step.
        resolved = await _resolve_unsent(clients, names.notifications, sweeper_url,
                                         settings.api.token.get_secret_value()
                                         if settings.api.token else "", endpoint,
                                         wait_s=3 * settings.visibility_timeout_s + 60)
        notif = await _scan(clients, names.notifications)
        # Late events (a Delivery after its Send, a superseded task) settle within a few
        # visibility timeouts; whatever is still there by then was never acknowledged.
        queues = await _queues_left(clients, settings.prefix,
                                    wait_s=3 * settings.visibility_timeout_s)
        for queue in (q for q, n in sorted(queues.items()) if n):
            await _show_left(clients, queue)
    statuses = Counter(rem[r]["status"] for r in ids if r in rem)
    nstatuses = Counter(notif[r]["status"] for r in ids if r in notif)
    accounted = sum(statuses[s] for s in DONE_REMITTANCE)
    lost = count - accounted
    per_request = _per_request(endpoint)
    email_dupes = sum(n - 1 for n in per_request.values() if n > 1)
    for_human = [r for r in ids if notif.get(r, {}).get("status") == "FAILED"]
    unknown = [r for r in for_human if _unknown(notif[r])]
    print(f"e-mails: {sum(per_request.values())} for {len(per_request)} requests; "
          f"resolved not_sent as an operator would (killed before SES was called, no "
          f"e-mail in the mailbox): {len(resolved)}; notifications left for a human: "
          f"{len(for_human)} ({len(unknown)} with an unknown send outcome)")
    webhook_dupes = sum(n - 1 for n in receiver.by_id.values() if n > 1) if receiver else 0
    print(f"remittances in={count} COMPLETED={statuses['COMPLETED']} "
          f"SENT={nstatuses['SENT']} REJECTED={statuses['REJECTED'] + nstatuses['REJECTED']} "
          f"FAILED={statuses['FAILED'] + nstatuses['FAILED']} "
          f"other={dict((s, n) for s, n in statuses.items() if s not in DONE_REMITTANCE)}")
    print(f"kills={sum(kills.values())} {dict(kills)} restarts={dict(sup.restarts)}")
    # A webhook repeated under the same webhook-id is the documented at-least-once window
    # (killed after the receiver's 2xx, before the delivery was recorded): a Standard
    # Webhooks receiver drops it by that id, so it is a redelivery, not a second effect.
    # An e-mail cannot be taken back: every second e-mail is a duplicate.
    print(f"lost={lost} duplicates={email_dupes} redelivered_webhooks={webhook_dupes} "
          f"(same webhook-id, dropped by the receiver)")
    left = {q: n for q, n in sorted(queues.items()) if n}
    print(f"queues left: {sum(left.values())} message(s) "
          f"{left if left else '(every queue empty, DLQs included)'}")
    ok = lost == 0 and email_dupes == 0 and not for_human and not left
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="soak")
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--kill-every-s", type=float, default=6.0)
    p.add_argument("--timeout-s", type=float, default=1800.0)
    p.add_argument("--port", type=int, default=4567)
    p.add_argument("--rate", type=float, default=4.0, help="remittances sent per second")
    p.add_argument("--port-offset", type=int, default=0,
                   help="add this to every service's HTTP port (beside a running make run)")
    args = p.parse_args(argv)
    configure_logging("WARNING", "console")
    # SIGTERM and SIGHUP stop the soak as Ctrl-C does: services first (tools/dev.py)
    with stop_signals():
        try:
            # a killed process's shard leases are taken over after 2 s, not the default 10 s;
            # the soak accounts for every job from the job tables at its end, so none may
            # expire meanwhile (dev's retention is ~5 min; the lifecycle under kill -9 is
            # tests/e2e/test_archive_kills.py)
            stack = LocalStack(args.port, service_ports(args.port_offset), command="make soak",
                               REMITFLOW_PREFIX="soak", REMITFLOW_STREAM_FAILOVER_S="2",
                               REMITFLOW_RETENTION_DAYS="1")
        except PortsTaken as exc:
            print(exc, file=sys.stderr, flush=True)
            return 1
        try:
            with stack:
                return asyncio.run(soak(args.count, args.kill_every_s, args.timeout_s,
                                        stack.emulator.endpoint, stack.supervisor,
                                        stack.receiver, args.rate,
                                        sweeper_url=f"http://127.0.0.1:"
                                                    f"{service_ports(args.port_offset)['sweeper']}"))
        except KeyboardInterrupt as exc:
            print(f"\n{exc or 'SIGINT'}: soak interrupted, services stopped", flush=True)
            return 130

if __name__ == "__main__":
    sys.exit(main())
