"""AWS clients, built once in the entry point and passed down.

Every request this process sends is counted by a botocore event hook into
``remitflow_aws_requests_total{service,operation}`` (retries included: that is
what AWS bills); reads that came back empty (a ``ReceiveMessage`` without messages,
a ``GetRecords`` without records) are also counted into
``remitflow_aws_empty_reads_total{service,operation}``: that is polling, work
proportional to time rather than to traffic (``tools/bench`` bills it per day, not
per remittance). With tracing on, every call inside a span is a child span
(``shared/tracing.py``). SES gets its own client with SDK retries off
(``docs/architecture.md``, "Delivery").
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import ClientError

from shared.metrics import AWS_EMPTY_READS, AWS_REQUESTS
from shared.settings import Settings
from shared.tracing import instrument_client

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_ses import SESClient
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_stepfunctions import SFNClient


def _count_request(event_name: str, **kwargs: Any) -> None:
    # event_name is "before-send.<service-id>.<Operation>"
    _, service, operation = event_name.split(".", 2)
    AWS_REQUESTS.labels(service=service, operation=operation).inc()


# Reads whose answer may be empty, and the list in the answer that says so.
_POLLS = {("sqs", "ReceiveMessage"): "Messages", ("dynamodb-streams", "GetRecords"): "Records"}


def _count_empty_read(event_name: str, http_response: Any = None, parsed: Any = None,
                      **kwargs: Any) -> None:
    # event_name is "after-call.<service-id>.<Operation>"; emitted for errors too
    _, service, operation = event_name.split(".", 2)
    key = _POLLS.get((service, operation))
    if (key and http_response is not None and http_response.status_code < 300
            and isinstance(parsed, dict) and not parsed.get(key)):
        AWS_EMPTY_READS.labels(service=service, operation=operation).inc()


def string_attributes(values: Mapping[str, str]) -> dict[str, Any]:
    """SNS/SQS ``MessageAttributes`` for plain string values."""
    return {k: {"DataType": "String", "StringValue": v} for k, v in values.items()}


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError (``""`` for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


_parsed = threading.local()


def session() -> AioSession:
    """A new SDK session that shares this thread's parsed service models.

    A session parses each service's model and the endpoint rules (JSON, hundreds of
    kilobytes for DynamoDB) the first time it makes a client of that service; a
    fresh session per :class:`AwsClients` parsed them all again, about 0.3 s of CPU
    each time. The parsed data (the session's loader) is shared per thread; everything
    else, credentials included, stays per session, so a process that changes its
    credentials gets them in its next clients.
    """
    sdk = get_session()
    loader = getattr(_parsed, "loader", None)
    if loader is None:
        loader = _parsed.loader = sdk.get_component("data_loader")
    sdk.register_component("data_loader", loader)
    return sdk


def client_args(settings: Settings) -> dict[str, Any]:
    """Where a client of this process points: its region, and the endpoint override
    (the emulator) when one is set."""
    kwargs: dict[str, Any] = {"region_name": settings.aws_region}
    if settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
        if settings.aws_endpoint_url.startswith("http://"):
            # Plain HTTP (the emulator) has no certificate to verify: do not load
            # the CA bundle for every client's connection pool.
            kwargs["verify"] = False
    return kwargs


@dataclass
class AwsClients:
    """The clients one process needs; an async context manager that owns them."""

    settings: Settings
    sqs: SQSClient = None  # type: ignore[assignment]
    dynamodb: DynamoDBClient = None  # type: ignore[assignment]
    streams: DynamoDBStreamsClient = None  # type: ignore[assignment]
    sfn: SFNClient = None  # type: ignore[assignment]
    sns: SNSClient = None  # type: ignore[assignment]
    ses: SESClient = None  # type: ignore[assignment]
    s3: S3Client = None  # type: ignore[assignment]
    _stack: AsyncExitStack | None = None

    async def __aenter__(self) -> AwsClients:
        stack = AsyncExitStack()
        sdk = session()
        base = AioConfig(
            retries={"mode": "standard", "max_attempts": self.settings.aws_max_attempts},
            max_pool_connections=64,
            connect_timeout=5,
            read_timeout=30,
            tcp_keepalive=True,
        )
        no_retry = AioConfig(
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=5,
            read_timeout=20,
        )
        kwargs = client_args(self.settings)

        async def make(name: str, config: AioConfig = base) -> Any:
            client = await stack.enter_async_context(
                sdk.create_client(name, config=config, **kwargs)  # type: ignore[call-overload]
            )
            client.meta.events.register("before-send.*.*", _count_request)
            client.meta.events.register("after-call.*.*", _count_empty_read)
            instrument_client(client)  # child spans, only when tracing is on
            return client

        self.sqs = await make("sqs")
        self.dynamodb = await make("dynamodb")
        self.streams = await make("dynamodbstreams")
        self.sfn = await make("stepfunctions")
        self.sns = await make("sns")
        self.ses = await make("ses", no_retry)
        # Path-style addressing: emulators on 127.0.0.1/localhost have no bucket subdomains.
        self.s3 = await make("s3", base.merge(AioConfig(s3={"addressing_style": "path"}))
                             if self.settings.aws_endpoint_url else base)
        self._stack = stack
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None


class QueueUrls:
    """Resolves and caches queue URLs (one GetQueueUrl per queue per process)."""

    def __init__(self, sqs: SQSClient) -> None:
        self._sqs = sqs
        self._cache: dict[str, str] = {}

    async def url(self, name: str) -> str:
        if name not in self._cache:
            resp = await self._sqs.get_queue_url(QueueName=name)
            self._cache[name] = resp["QueueUrl"]
        return self._cache[name]
