"""``remitflow dev`` (what ``make run`` calls): the whole pipeline on one laptop.

Starts the emulator in-process, creates every resource, loads the demo reference
data, runs each service as its own OS process (restarting one that dies, as an
orchestrator would), feeds demo traffic with a live progress view, and stops
everything cleanly on Ctrl-C, SIGTERM or SIGHUP (what an IDE, a process manager or
``timeout`` sends): the runner owns its processes and none outlives it. It refuses
to start, naming the holder, when a port it needs is taken.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from shared.aws.clients import AwsClients
from shared.aws.dynamo import from_item
from shared.aws.emulator import Emulator
from shared.logs import configure_logging
from shared.provision.bootstrap import load_reference_data
from shared.settings import Settings
from tools.demo import (
    DEMO_FAULTS,
    demo_bodies,
    demo_files,
    reference_data,
    send_messages,
    upload_files,
)
from tools.ports import PortsTaken, require_free
from tools.stack import PORTS, SERVICES, bootstrap_stack, service_ports
from tools.stack import StackNames as Names
from tools.webhook_receiver import Receiver

CONSOLES = tuple(s for s in SERVICES if s.console)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LOG_DIR = Path(".dev-logs")
# Dev compresses time, never policy: the production schedules run 60 times faster
# (5 min takes 5 s, the webhook schedule's 27.6 h about 28 min).
DEV_ENV = {
    "REMITFLOW_SWEEPER_INTERVAL_S": "3",
    "REMITFLOW_DEV_TIME_SCALE": "60",
    "REMITFLOW_RECEIVE_WAIT_S": "1",
    "REMITFLOW_LEASE_TTL_S": "10",
    "REMITFLOW_STREAM_FAILOVER_S": "5",
    "REMITFLOW_STREAM_IDLE_MAX_S": "1",
    "REMITFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
    "REMITFLOW_SHUTDOWN_GRACE_S": "10",
    # the data lifecycle in minutes: finished jobs expire after ~5 min (the embedded
    # emulator deletes expired items every 30 s) and land in the archive
    "REMITFLOW_RETENTION_DAYS": "0.0035",
}


@contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the runner exactly as Ctrl-C does (``KeyboardInterrupt``).

    Only the first of them interrupts: one that comes while the runner is already
    stopping its services is ignored, so a second Ctrl-C cannot abandon them halfway.
    """
    fired = False

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Supervisor:
    """Runs ``remitflow run SERVICE`` per service and restarts the ones that die.

    ``ports`` maps each service to its HTTP port (default: the declared ones).
    """

    def __init__(self, env: dict[str, str], ports: Mapping[str, int] | None = None) -> None:
        self.env = env
        self.ports = dict(ports or PORTS)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: Counter[str] = Counter()
        self.stopping = False
        LOG_DIR.mkdir(exist_ok=True)

    def start(self, service: str) -> None:
        with (LOG_DIR / f"{service}.log").open("ab") as log:
            # Its own session: a terminal's Ctrl-C reaches the runner only, which then
            # stops every service in order (stop()).
            self.procs[service] = subprocess.Popen(
                [sys.executable, "-m", "tools.cli", "run", service],
                env={**self.env, "REMITFLOW_HTTP_PORT": str(self.ports[service])},
                stdout=log, stderr=log, start_new_session=True)

    def check(self) -> list[str]:
        restarted = []
        for service, proc in self.procs.items():
            if proc.poll() is not None and not self.stopping:
                self.restarts[service] += 1
                restarted.append(f"{service} exited with {proc.returncode}; restarted")
                self.start(service)
        return restarted

    def stop(self, grace_s: float = 15.0) -> None:
        self.stopping = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


async def _counts(clients: AwsClients, names: Names) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for table in (names.remittances, names.notifications):
        paginator = clients.dynamodb.get_paginator("scan")
        async for page in paginator.paginate(TableName=table, ProjectionExpression=
                                              "request_id, #s, attempt, channel",
                                              ExpressionAttributeNames={"#s": "status"}):
            for item in page.get("Items", []):
                row = from_item(item)
                out.setdefault(row["request_id"], {})[table] = row
    return out


def _render(rows: dict[str, dict[str, Any]], names: Names, dlq: int, notes: list[str],
            receiver: Receiver | None) -> str:
    rem = Counter(r[names.remittances]["status"] for r in rows.values() if names.remittances in r)
    notif = Counter(r[names.notifications]["status"] for r in rows.values()
                    if names.notifications in r)
    lines = [f"remittances:   {dict(sorted(rem.items())) or '-'}",
             f"notifications: {dict(sorted(notif.items())) or '-'}",
             f"partner DLQ:   {dlq} message(s)"]
    if receiver is not None:
        dupes = sum(n - 1 for n in receiver.by_id.values() if n > 1)
        lines.append(f"webhooks:      {len(receiver.received)} received and verified on :9900, "
                     f"{dupes} duplicate(s), {receiver.rejected} bad signature(s)")
    lines += [f"  ! {n}" for n in notes[-3:]]
    return "\n".join(lines)


def _table(rows: dict[str, dict[str, Any]], names: Names) -> str:
    out = [f"{'request_id':<32} {'remittance':<14} {'try':>3}  {'notification':<13} channel"]
    for rid in sorted(rows):
        r = rows[rid].get(names.remittances, {})
        n = rows[rid].get(names.notifications, {})
        out.append(f"{rid[:32]:<32} {r.get('status', '-'):<14} {int(r.get('attempt', 0)):>3}  "
                   f"{n.get('status', '-'):<13} {n.get('channel', '-')}")
    return "\n".join(out)


async def _watch(settings: Settings, sup: Supervisor, demo: bool, count: int,
                 receiver: Receiver | None) -> None:
    names = Names(settings.prefix)
    async with AwsClients(settings) as clients:
        while not all(_ready(port) for port in sup.ports.values()):
            sup.check()
            await asyncio.sleep(0.5)
        print("services ready: " + "  ".join(f"{s} :{p}" for s, p in sup.ports.items()),
              flush=True)
        for console in CONSOLES:
            print(_console_hint(sup.env, sup.ports[console.name], console.console or ""),
                  flush=True)
        if demo:
            bodies = demo_bodies(count)
            for label, _ in bodies:
                print(f"  sending  {label}")
            await send_messages(settings, [b for _, b in bodies])
            files = demo_files()
            for label, _, _ in files:
                print(f"  uploading {label}")
            await upload_files(settings, [(key, data) for _, key, data in files])
        dlq_url = (await clients.sqs.get_queue_url(
            QueueName=Names.dlq(names.remittance_events)))["QueueUrl"]
        notes: list[str] = []
        tty = sys.stdout.isatty()
        last = ""
        while True:
            notes += sup.check()
            rows = await _counts(clients, names)
            attrs = await clients.sqs.get_queue_attributes(
                QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
            dlq = int(attrs["Attributes"].get("ApproximateNumberOfMessages", "0"))
            view = _render(rows, names, dlq, notes, receiver)
            if view != last:
                if tty:
                    token = os.environ.get("REMITFLOW_API_TOKEN", "")
                    print("\x1b[2J\x1b[H" + time.strftime("%H:%M:%S ") + "remitflow dev "
                          f"(Ctrl-C stops)  API token: {token}\n" + view + "\n\n"
                          + _table(rows, names), flush=True)
                else:
                    print(time.strftime("%H:%M:%S ") + view.replace("\n", " | "), flush=True)
                last = view
            await asyncio.sleep(2)


def _console_hint(env: dict[str, str], port: int, path: str) -> str:
    """Where the operator console is and how to sign in (never the token itself)."""
    url = f"http://127.0.0.1:{port}{path}"
    if env.get("REMITFLOW_API_TOKEN"):
        return (f"operator console: {url}  (sign in with the API token: the value of "
                "REMITFLOW_API_TOKEN)")
    return f"operator console: {url}  (API auth is off: no sign-in needed)"


def _start_receiver() -> Receiver | None:
    """The demo payees on the webhook channel post to 127.0.0.1:9900."""
    secrets = [p["webhook_secret"] for p in reference_data()["payees"] if p.get("webhook_secret")]
    if not secrets:
        return None
    try:
        receiver = Receiver(secrets[0], port=9900, echo=not sys.stdout.isatty()).start()
    except OSError as exc:
        print(f"webhook receiver not started on :9900 ({exc})", flush=True)
        return None
    print("webhook receiver on http://127.0.0.1:9900 (verifies Standard Webhooks signatures)")
    return receiver


def dev_environment(user: dict[str, str], emulator: str,
                    defaults: dict[str, str] | None = None) -> dict[str, str]:
    """The services' environment: dev defaults, then the user's environment on top.

    A variable the user set always wins over a dev default (``defaults`` are
    defaults too, e.g. the demo's faults); only the emulator's endpoint and
    credentials are forced, since dev runs its own emulator.
    """
    return {**DEV_ENV, **(defaults or {}), **user, "AWS_ENDPOINT_URL": emulator,
            "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing"}


def dev_api_token() -> tuple[str, bool]:
    """``REMITFLOW_API_TOKEN`` when set, else a fresh random one; (token, generated)."""
    token = os.environ.get("REMITFLOW_API_TOKEN")
    if token:
        return token, False
    return secrets.token_urlsafe(24), True


class LocalStack:
    """Emulator + resources + reference data + webhook receiver + supervised services.

    What ``remitflow dev`` and ``make soak`` share: ``with LocalStack(...) as stack``
    checks that every port it needs is free (:class:`~tools.ports.PortsTaken` names
    the holder otherwise), starts everything and stops it all, services first, on the
    way out, also when interrupted while starting.
    """

    def __init__(self, port: int, ports: Mapping[str, int] | None = None, *,
                 command: str = "remitflow dev", **extra_env: str) -> None:
        ports = dict(ports or PORTS)
        require_free({"emulator": port, **ports}, command=command)
        self.emulator = Emulator("127.0.0.1", port)
        self.api_token, generated = dev_api_token()
        self.env = {**dev_environment(dict(os.environ), self.emulator.endpoint, extra_env),
                    "REMITFLOW_API_TOKEN": self.api_token}
        os.environ.update({k: v for k, v in self.env.items()
                           if k in ("AWS_ENDPOINT_URL", "AWS_REGION", "REMITFLOW_PREFIX",
                                    "REMITFLOW_API_TOKEN")})
        if generated:
            print(f"API token (generated for this run): {self.api_token}\n"
                  f"  export REMITFLOW_API_TOKEN={self.api_token}", flush=True)
        self.settings = Settings()
        self.receiver: Receiver | None = None
        self.supervisor = Supervisor(self.env, ports)

    def __enter__(self) -> LocalStack:
        try:
            self.emulator.start()
            print(f"emulator on {self.emulator.endpoint}; creating resources…", flush=True)

            async def setup() -> None:
                async with AwsClients(self.settings) as clients:
                    await bootstrap_stack(self.settings, clients)
                    await load_reference_data(clients, self.settings, reference_data())

            asyncio.run(setup())
            self.receiver = _start_receiver()
            for service in self.supervisor.ports:
                self.supervisor.start(service)
                print(f"  {service}: pid {self.supervisor.procs[service].pid} "
                      f"port {self.supervisor.ports[service]}", flush=True)
        except BaseException:
            # interrupted (or failed) half-way: what was started is stopped
            self.__exit__()
            raise
        print(f"services starting; logs in {LOG_DIR}/", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        # No signal may abandon the services half-way: from here on they are ignored
        # (no process is started after this point, so none inherits that).
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        self.supervisor.stop()
        if self.receiver is not None:
            self.receiver.stop()
        self.emulator.stop()


def run_dev(*, port: int = 4566, demo: bool = True, count: int = 12,
            port_offset: int = 0) -> int:
    configure_logging("WARNING", "console")
    faults = {"REMITFLOW_FAULTS": DEMO_FAULTS} if demo else {}
    with stop_signals():
        try:
            stack = LocalStack(port, service_ports(port_offset), **faults)
        except PortsTaken as exc:
            print(exc, file=sys.stderr, flush=True)
            return 1
        try:
            with stack:
                asyncio.run(_watch(stack.settings, stack.supervisor, demo, count,
                                   stack.receiver))
        except KeyboardInterrupt as exc:
            print(f"\n{exc or 'SIGINT'}: stopping services…", flush=True)
    print("stopped.", flush=True)
    return 0
