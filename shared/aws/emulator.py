"""The embedded AWS emulator (moto server) for ``remitflow dev`` and the tests.

Moto runs state machines only after ``POST /moto-api/config`` switches execution on,
and its workflow tasks call the emulator back on ``localhost:$MOTO_PORT``, so both
are set here before anything else talks to it. Its Step Functions interpreter gets
caches first (``emulator_sfn``; docs/emulator.md); SES's sending events, which moto
does not publish, come from ``shared/aws/emulator_ses.py``; DynamoDB's conditional
writes are made atomic, as on AWS, by ``shared/aws/emulator_dynamodb.py``; DynamoDB TTL,
which moto stores but never applies, from ``shared/aws/emulator_ttl.py``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.request
from typing import Any

from moto.server import ThreadedMotoServer

from shared.aws import (
    emulator_dynamodb,
    emulator_http,
    emulator_iam,
    emulator_ses,
    emulator_sfn,
    emulator_sqs,
    emulator_ttl,
)
from shared.startup import resume_collector

TTL_INTERVAL_ENV = "REMITFLOW_EMULATOR_TTL_INTERVAL_S"
TTL_INTERVAL_S = 30.0    # how often expired items are deleted, unless the variable says


CACHES_ENV = "REMITFLOW_EMULATOR_SFN_CACHE"


def caches_on() -> bool:
    """The emulator's speed changes (``docs/emulator.md``) are on unless ``CACHES_ENV`` is
    ``off``: moto as shipped, for ``make bench-emulator`` and ``make bench-calls``. The
    name is from when Step Functions had the only cache."""
    return os.environ.get(CACHES_ENV, "on") != "off"


class _Server(ThreadedMotoServer):
    """moto's threaded server with the emulator's own routes in front
    (``DELETE /_aws/dynamodb/expired``, :mod:`shared.aws.emulator_ttl`;
    ``GET /_aws/ses``, :mod:`shared.aws.emulator_ses`)."""

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = emulator_ses.routes(emulator_ttl.routes(
            DomainDispatcherApplication(create_backend_app)))
        handler = (emulator_http.request_handler() if caches_on()  # keep-alive
                   else MotoRequestHandler)                       # moto as shipped
        self._server = make_server(self._ip_address, self._port, app, True,
                                   request_handler=handler)
        self._server_ready_event.set()
        self._server.serve_forever()


def configure(endpoint: str) -> None:
    """Switch Step Functions execution on (needed after every emulator start)."""
    body = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()
    req = urllib.request.Request(f"{endpoint}/moto-api/config", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def wait_until_up(host: str, port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def sent_emails(endpoint: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """E-mails the emulator's SES accepted, oldest first, for tests and the soak
    (``GET /_aws/ses``, :func:`shared.aws.emulator_ses.mailbox`)."""
    with urllib.request.urlopen(f"{endpoint}{emulator_ses.MAILBOX_PATH}",
                                timeout=timeout_s) as resp:
        return list(json.load(resp)["messages"])


def enforce_iam(endpoint: str) -> None:
    """Authenticate and authorise every request from now on (``docs/deploy.md``,
    "IAM enforced"): create the IAM users, roles and policies first."""
    req = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def _log_refusals() -> None:
    """IAM refusals go to stderr, one JSON line each (``shared/aws/emulator_iam.py``)."""
    refusals = logging.getLogger(emulator_iam.log.name)
    if not refusals.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        refusals.addHandler(handler)
        refusals.propagate = False


class Emulator:
    """An in-process moto server on ``host:port`` with execution switched on."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4566) -> None:
        self.host = host
        self.port = port
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Emulator:
        os.environ["MOTO_PORT"] = str(self.port)
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # moto's Step Functions tasks call back into the emulator through boto3 clients
        # (10 pooled connections each); with kept connections a burst of executions
        # returns more than that and urllib3 warns on every one it does not keep.
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
        if caches_on():
            emulator_sfn.install()  # off only to measure moto as shipped (make bench-emulator)
            emulator_http.install()  # routing answers computed once, not per request
            emulator_sqs.install()   # a receive no longer recounts the queue per message
            emulator_dynamodb.cache_update_expressions()  # each UpdateExpression parsed once
        emulator_ses.install()      # SES publishes its sending events, as on AWS
        emulator_sfn.keep_early_answers()  # a task answered at once is not timed out
        emulator_dynamodb.install()  # conditional writes are atomic, as on AWS
        emulator_iam.install()      # IAM, once switched on, checks resources as AWS does
        _log_refusals()
        self._server = _Server(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        # DynamoDB TTL, which moto stores but never applies (docs/emulator.md)
        emulator_ttl.start_expirer(float(os.environ.get(TTL_INTERVAL_ENV, TTL_INTERVAL_S)))
        wait_until_up(self.host, self.port)
        configure(self.endpoint)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def serve_forever(host: str, port: int) -> None:
    """``remitflow emulator``: run the emulator alone until killed (tests, bench)."""
    emulator = Emulator(host, port).start()
    resume_collector()          # up: what start-up made is frozen (shared/startup.py)
    print(f"emulator ready on {emulator.endpoint}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        emulator.stop()
