"""IAM in the embedded emulator: the resources moto leaves out, the workflows' role,
and every refusal written down.

moto authenticates and authorises every request once enforcement is on
(``POST /moto-api/reset-auth`` with ``0``; ``docs/deploy.md``, "IAM enforced"), but
as shipped it evaluates only SQS (queue ARN), S3 (bucket/key), IAM and STS calls
against a resource: every other service's call is evaluated against ``*``, so a
statement scoped to a table or a state machine never matches and the call is
refused even when the policy allows it. :func:`install` adds the resources our
services' calls name, the way AWS evaluates them:

- DynamoDB: the table (``table/T``), its index (``table/T/index/I``) for a ``Query``
  or ``Scan`` on one, each table of a ``BatchGetItem``/``BatchWriteItem``/transaction
  (every one must be allowed); DynamoDB Streams: the stream ARN (for ``GetRecords``,
  the stream the iterator belongs to); ``ListTables``/``ListStreams``: ``*``.
- Step Functions: ``stateMachineArn`` or ``executionArn``; task tokens name no
  resource (``*``, as on AWS).
- SQS ``GetQueueUrl``: the queue it names (moto evaluates the other SQS calls itself);
- SNS: ``TopicArn``; SES ``SendEmail``: the sender's identity and, when named, the
  configuration set (both must be allowed, as on AWS).

moto's workflow interpreter calls the emulator back with the fixed access key
``ak`` (``moto/stepfunctions/parser/asl/utils/boto_client.py``), which no IAM user
owns: under enforcement every task of every workflow would be refused. On AWS a
state machine's calls are made with its execution role, so here they are too while
enforcement is on: the interpreter's client for a task is signed with temporary
credentials of the role in the execution's ``RoleArn`` (assumed inside moto's STS),
and moto checks the call against that role's policies.

A batch operation is checked as the action AWS authorises it with
(``DeleteMessageBatch`` as ``sqs:DeleteMessage``); moto checks the operation's name.

Every refusal (unknown key, bad signature, access denied) is logged on the
``remitflow.emulator.iam`` logger as one JSON line with the access key id, the action
and the resources, so a test can fail on any refusal, including one a service
retried and recovered from.

Tied to moto's internals like ``shared/aws/emulator_sfn.py``: the same version check.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import math
import sys
import threading
from typing import Any

from shared.aws.emulator_patch import check_version, once, require
from shared.aws.emulator_sfn import _TASK_SERVICES

log = logging.getLogger("remitflow.emulator.iam")


@once
def install() -> None:
    """Resources, batch actions, the workflows' credentials and the refusal log
    (idempotent)."""
    check_version()
    _install_resources()
    _install_refusal_log()
    _install_workflow_credentials()


# --- resources ------------------------------------------------------------------------

def _partition_arn(handler: Any, service: str, rest: str) -> str:
    return f"arn:aws:{service}:{handler.region}:{handler.current_account}:{rest}"


def _table_arn(handler: Any, table: str) -> str:
    return table if table.startswith("arn:") else _partition_arn(handler, "dynamodb",
                                                                 f"table/{table}")


def dynamodb_resources(handler: Any, body: dict[str, Any]) -> list[str]:
    """The ARNs a DynamoDB request acts on (each must be allowed)."""
    if "TableName" in body:
        table = _table_arn(handler, str(body["TableName"]))
        index = body.get("IndexName")
        return [f"{table}/index/{index}" if index else table]
    if "RequestItems" in body:
        return [_table_arn(handler, t) for t in body["RequestItems"]]
    if "TransactItems" in body:
        return [_table_arn(handler, str(op["TableName"]))
                for item in body["TransactItems"] for op in item.values()]
    return ["*"]


def _per_resource(resources_of: Any) -> Any:
    """A handler's ``_authenticate_and_authorize_normal_action`` that checks each resource
    of the request instead of the one moto passes (``*`` for these services)."""
    from moto.core.authorization import ActionAuthenticatorMixin

    original = ActionAuthenticatorMixin._authenticate_and_authorize_normal_action

    from moto import settings

    def authorise(self: Any, resource: str = "*") -> None:
        if not math.isfinite(settings.INITIAL_NO_AUTH_ACTION_COUNT):
            original(self, resource)        # not enforced: nothing to look up
            return
        found = resources_of(self) if resource == "*" else [resource]
        for arn in found or ["*"]:
            original(self, arn)

    return authorise


def _install_resources() -> None:
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler
    from moto.ses.responses import EmailResponse
    from moto.sns.responses import SNSResponse
    from moto.sqs.responses import SQSResponse
    from moto.stepfunctions.responses import StepFunctionResponse

    def dynamodb(self: Any) -> list[str]:
        body = getattr(self, "params", None) or {}
        return dynamodb_resources(self, body)

    def streams(self: Any) -> list[str]:
        arn = self._get_param("StreamArn") or self._get_param("ShardIterator")
        return [str(arn).split("|", 1)[0]] if arn else ["*"]

    def sqs(self: Any) -> list[str]:
        name = self._get_param("QueueName")
        return [_partition_arn(self, "sqs", str(name))] if name else ["*"]

    def sfn(self: Any) -> list[str]:
        arn = self._get_param("executionArn") or self._get_param("stateMachineArn")
        return [str(arn)] if arn else ["*"]

    def sns(self: Any) -> list[str]:
        arn = self._get_param("TopicArn") or self._get_param("TargetArn")
        return [str(arn)] if arn else ["*"]

    def ses(self: Any) -> list[str]:
        source = self._get_param("Source")
        if not source:
            return ["*"]
        address = str(source).rsplit("<", 1)[-1].rstrip(">").strip()
        found = [_partition_arn(self, "ses", f"identity/{address}")]
        config_set = self._get_param("ConfigurationSetName")
        if config_set:
            found.append(_partition_arn(self, "ses", f"configuration-set/{config_set}"))
        return found

    for cls, resources_of in ((DynamoHandler, dynamodb), (DynamoDBStreamsHandler, streams),
                              (SQSResponse, sqs), (StepFunctionResponse, sfn), (SNSResponse, sns),
                              (EmailResponse, ses)):
        cls._authenticate_and_authorize_normal_action = (  # type: ignore[method-assign]
            _per_resource(resources_of))


# --- refusals ---------------------------------------------------------------------------

def _access_key_of(headers: Any) -> str:
    auth = str(headers.get("Authorization") or "")
    if "Credential=" not in auth:
        return ""
    return auth.split("Credential=", 1)[1].split("/", 1)[0]


#: API operations whose IAM action has another name (AWS authorises a batch as its
#: single action: there is no ``sqs:DeleteMessageBatch`` action; moto checks the
#: operation's own name).
IAM_ACTION = {"DeleteMessageBatch": "DeleteMessage", "SendMessageBatch": "SendMessage",
              "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


@functools.cache
def _iam_actions(iam_request_cls: type) -> type:
    """moto's request class, checking the IAM action of an operation, not its name."""

    class IamAction(iam_request_cls):  # type: ignore[misc]
        def __init__(self, *args: Any, action: str, **kwargs: Any) -> None:
            super().__init__(*args, action=IAM_ACTION.get(action, action), **kwargs)

    return IamAction


def _install_refusal_log() -> None:
    from moto.core.authorization import ActionAuthenticatorMixin

    original = ActionAuthenticatorMixin._authenticate_and_authorize_action

    @functools.wraps(original)
    def checked(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        try:
            original(self, _iam_actions(iam_request_cls), resource)
        except Exception as exc:
            log.warning(json.dumps({
                "event": "emulator.iam_refused", "access_key": _access_key_of(self.headers),
                "action": self._get_action(), "resource": resource,
                "error": type(exc).__name__}))
            raise

    ActionAuthenticatorMixin._authenticate_and_authorize_action = checked  # type: ignore[method-assign]


# --- the workflows' role ----------------------------------------------------------------

def _install_workflow_credentials() -> None:
    boto_mod = importlib.import_module("moto.stepfunctions.parser.asl.utils.boto_client")
    for name in _TASK_SERVICES:
        importlib.import_module(name)
    require(boto_mod, "boto_client_for")
    role_factory = _role_clients()
    for name, module in list(sys.modules.items()):
        current = getattr(module, "boto_client_for", None)
        if name.startswith("moto.stepfunctions.") and current is not None:
            module.boto_client_for = _with_role(current, role_factory)  # type: ignore[attr-defined]


def _role_clients() -> Any:
    """``(region, service, role_arn) → client`` signed with the role's temporary
    credentials, one per key (a boto3 client is thread-safe)."""
    import boto3
    from botocore.config import Config
    from moto.settings import moto_server_port
    from moto.sts.models import sts_backends

    clients: dict[tuple[str, str, str, str], Any] = {}
    lock = threading.Lock()

    def client(region: str, service: str, role_arn: str) -> Any:
        key = (region, service, role_arn, str(moto_server_port()))
        with lock:
            found = clients.get(key)
            if found is None:
                account = role_arn.split(":")[4]
                role = sts_backends[account]["aws"].assume_role(
                    region_name=region, role_session_name="stepfunctions",
                    role_arn=role_arn, policy="", duration=43200, external_id="")
                found = clients[key] = boto3.client(
                    service_name=service, region_name=region,
                    endpoint_url=f"http://localhost:{moto_server_port()}",
                    aws_access_key_id=role.access_key_id,
                    aws_secret_access_key=role.secret_access_key,
                    aws_session_token=role.session_token,
                    config=Config(parameter_validation=False,
                                  retries={"max_attempts": 0, "total_max_attempts": 1},
                                  connect_timeout=60, read_timeout=60))
            return found

    return client


def _with_role(factory: Any, role_client: Any) -> Any:
    from moto import settings
    from moto.core.models import botocore_stubber

    @functools.wraps(factory)
    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        role_arn = getattr(state_credentials, "role_arn", None)
        # Unenforced (the usual emulator), moto's own shared client: one per service,
        # not one per stack's role.
        enforced = math.isfinite(settings.INITIAL_NO_AUTH_ACTION_COUNT)
        if (not enforced or not role_arn
                or botocore_stubber.enabled or ":role/" not in str(role_arn)):
            return factory(region, service, state_credentials)
        return role_client(region, service, str(role_arn))

    return boto_client_for
