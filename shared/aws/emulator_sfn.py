"""Step Functions in the embedded emulator without re-doing work on every state.

moto's workflow interpreter (a port of LocalStack's) repeats three costly steps:

- it parses the whole definition with antlr4 when a state machine is created or
  updated and again for **every execution** (``ExecutionWorker._get_evaluation_entrypoint``);
- it builds a new JSONPath parser (``jsonpath_ng.ext.parse``, and ``jsonpath_ng.parse``
  for a ``ResultPath``: a PLY ``yacc`` table read each) for **every path it
  evaluates**, i.e. several times per state;
- it creates a new boto3 client for **every service task** (``boto_client_for``).

The parsed program keeps no run-time state (every retry counter, variable and
result lives in the execution's ``Environment``), a JSONPath expression is pure,
and a boto3 client is thread-safe, so each is built once per distinct input and
reused. A definition is keyed by its full text: an updated state machine (a new
version) is parsed again, an unchanged one never.

One change is not for speed but to answer as AWS does (:func:`keep_early_answers`,
on whether or not the caches are): a task's answer or heartbeat that arrives before
moto's execution thread starts waiting for it is kept, where moto loses it and
reports a heartbeat timeout.

This patches moto's internals, so it is tied to the moto version pinned in
``constraints.txt``: :func:`install` refuses to start (``EmulatorPatchError``) when
moto is another version or when an attribute it replaces is missing, rather than run
silently unpatched or half-patched. The finding is written up for moto's tracker in
``docs/emulator.md``.
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
from typing import Any

from shared.aws.emulator_patch import EmulatorPatchError, check_version, once, require

_PARSER = "moto.stepfunctions.parser.asl.parse.asl_parser"
_JSON_PATH = "moto.stepfunctions.parser.asl.utils.json_path"
_RESULT_PATH = "moto.stepfunctions.parser.asl.component.common.path.result_path"
_BOTO = "moto.stepfunctions.parser.asl.utils.boto_client"
_CALLBACK = "moto.stepfunctions.parser.asl.eval.callback.callback"
#: Service integrations our workflows use (docs/architecture.md "Data flow"); each
#: imported ``boto_client_for`` by name, so each module's reference is replaced.
_TASK_SERVICES = tuple(
    f"moto.stepfunctions.parser.asl.component.state.exec.state_task.service.{m}"
    for m in ("state_task_service_sqs", "state_task_service_sns",
              "state_task_service_dynamodb"))


@once
def install() -> None:
    """Put the caches in place (idempotent); raise ``EmulatorPatchError`` if moto moved."""
    check_version()
    parser_mod = importlib.import_module(_PARSER)
    json_path = importlib.import_module(_JSON_PATH)
    result_path = importlib.import_module(_RESULT_PATH)
    boto_mod = importlib.import_module(_BOTO)
    services = [importlib.import_module(m) for m in _TASK_SERVICES]

    asl = require(parser_mod, "AmazonStateLanguageParser")
    original_parse = require(asl, "parse")
    require(json_path, "extract_json")
    original_path_parse = require(json_path, "parse")
    original_result_parse = require(result_path, "parse")
    original_client = require(boto_mod, "boto_client_for")
    for module in services:
        if require(module, "boto_client_for") is not original_client:
            raise EmulatorPatchError(f"{module.__name__}.boto_client_for is not moto's")

    asl.parse = staticmethod(functools.lru_cache(maxsize=64)(original_parse))
    json_path.parse = functools.lru_cache(maxsize=4096)(original_path_parse)  # type: ignore[attr-defined]
    result_path.parse = functools.lru_cache(maxsize=1024)(original_result_parse)  # type: ignore[attr-defined]
    cached_client = _client_cache(original_client)
    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.") and \
                getattr(module, "boto_client_for", None) is original_client:
            module.boto_client_for = cached_client  # type: ignore[attr-defined]


def _client_cache(original: Any) -> Any:
    from moto.core.models import botocore_stubber
    from moto.settings import moto_server_port

    clients: dict[tuple[str, str, bool, str], Any] = {}
    lock = threading.Lock()

    @functools.wraps(original)
    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        # moto's own function ignores state_credentials too; the key is what it reads.
        key = (region, service, bool(botocore_stubber.enabled), str(moto_server_port()))
        with lock:
            client = clients.get(key)
            if client is None:
                client = clients[key] = original(region, service, state_credentials)
            return client

    return boto_client_for


@once
def keep_early_answers() -> None:
    """A callback task's answer or heartbeat is kept however early it comes, as on AWS.

    moto sends a ``.waitForTaskToken`` task's message and only then creates the task's
    heartbeat endpoint (``StateTaskServiceCallback._eval_integration_pattern``). A
    worker quick enough to answer in between is told its ``SendTaskSuccess`` worked,
    but the answer never reaches the heartbeat wait: the execution sits out the whole
    ``HeartbeatSeconds`` and fails the task with ``States.HeartbeatTimeout``. A
    ``SendTaskHeartbeat`` in the same window is refused as an invalid token. AWS accepts
    either as soon as the token exists. So an endpoint remembers that it heard from its
    worker, and a heartbeat endpoint created after that starts out notified: the wait
    then reads the answer, or counts the heartbeat. (Each side writes before it reads
    the other's field, so under the GIL one of them always sees the other.)

    Seen as ``tests/deploy/test_adding_a_service.py`` failing under load: its one
    service answered the task within a millisecond and no sweeper re-drove the
    execution the emulator had timed out a minute later.
    """
    check_version()
    endpoint_cls = require(importlib.import_module(_CALLBACK), "CallbackEndpoint")
    setup = require(endpoint_cls, "setup_heartbeat_endpoint")
    notify = require(endpoint_cls, "notify")
    notify_heartbeat = require(endpoint_cls, "notify_heartbeat")

    def heard(self: Any, outcome: Any) -> None:
        self._heard_from_worker = True
        notify(self, outcome)

    def heartbeat(self: Any) -> bool:
        self._heard_from_worker = True
        notify_heartbeat(self)          # False only when no endpoint exists yet
        return True                     # the token is valid: AWS accepts the heartbeat

    def setup_heartbeat_endpoint(self: Any, heartbeat_seconds: int) -> Any:
        endpoint = setup(self, heartbeat_seconds)
        if getattr(self, "_heard_from_worker", False):
            endpoint.notify()
        return endpoint

    endpoint_cls.notify = heard
    endpoint_cls.notify_heartbeat = heartbeat
    endpoint_cls.setup_heartbeat_endpoint = setup_heartbeat_endpoint


def parse_cache_info() -> Any:
    """``functools`` cache statistics of the definition parser (tests, docs/emulator.md)."""
    asl = importlib.import_module(_PARSER).AmazonStateLanguageParser
    return asl.parse.cache_info()
