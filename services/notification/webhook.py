"""Webhook delivery per the Standard Webhooks spec (https://www.standardwebhooks.com).

What is guaranteed:

* The body is serialized once; the bytes that are signed are exactly the bytes sent.
* ``webhook-id`` is derived from the request id, so every retry of one notification
  (quick retries here and later retries by the service) carries the same id and the
  receiver can deduplicate.
* Redirects are never followed, and only ``http``/``https`` targets are contacted.
* SSRF guard: the host is resolved first and every address must be acceptable
  (never link-local, cloud metadata, multicast, unspecified or reserved; loopback and
  private ranges only with ``allow_private``); the request then goes to the checked
  address (Host header and TLS SNI keep the original name), so a DNS answer that
  changes between check and connect cannot redirect it.
* Connections are pooled per receiver host name (:class:`~services.notification.pools.
  HostPools`), never per address: a connection verified for one payee's host is never
  reused for another host on the same address.
* The outcome tells the caller what to do next: ``delivered``; ``gone`` (410: stop,
  the receiver asked us to); ``transient`` (try again later; ``retry_after_s`` when
  the receiver said when); ``business`` (a human has to look: 4xx, 3xx, refused target).
* Each request carries the W3C ``traceparent`` of the delivery's span (outside the
  signature), so a payee can join its logs to ours.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import email.utils
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal

import httpx

from services.notification.pools import HostPools, PoolKey
from shared.retry import sleep_or_stop
from shared.schedule import Schedule
from shared.tracing import headers as trace_headers

EVENT_TYPE: Final = "remittance.advice"
SECRET_PREFIX: Final = "whsec_"
USER_AGENT: Final = "remitflow-webhooks/1"
MAX_DETAIL_BODY: Final = 200
MAX_DRAIN_BODY: Final = 16 * 1024

Outcome = Literal["delivered", "gone", "transient", "business"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Addresses that are never a legitimate webhook receiver, whatever allow_private says.
_METADATA: Final = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS / GCP / Azure / OpenStack instance metadata
    "169.254.170.2",    # ECS task metadata / credentials
    "fd00:ec2::254",    # AWS IMDS over IPv6
    "100.100.100.200",  # Alibaba Cloud metadata
    "192.0.0.192",      # Oracle Cloud metadata
))
_ALWAYS_BLOCKED: Final = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "fe80::/10", "ff00::/8",
))


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of one :func:`deliver` call (possibly several HTTP attempts)."""

    outcome: Outcome
    status_code: int | None
    attempts: int
    detail: str
    retry_after_s: float | None = None


class TargetRefused(Exception):
    """The webhook URL points somewhere we will not send to."""


# --- signing ------------------------------------------------------------------------------

def _secret_key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not whsec_<base64>") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "<msg_id>.<timestamp>.<body>">``.

    Raises:
        ValueError: ``secret`` is not ``whsec_<base64>`` (the message never contains it).
    """
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def webhook_id_for(request_id: str) -> str:
    """Stable message id for the notification of ``request_id`` (same on every retry)."""
    digest = hashlib.sha256(f"remitflow:advice:{request_id}".encode()).hexdigest()
    return "msg_" + digest[:32]


def _json_default(value: object) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact; JSON numbers would invite float parsing
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _utc_iso(value: str) -> str:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is None:
        return value
    return parsed.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def build_body(payload: Mapping[str, Any], *, event_type: str = EVENT_TYPE,
               event_time: str | None = None) -> bytes:
    """The compact UTF-8 JSON envelope ``{"type", "timestamp", "data"}``.

    ``timestamp`` is when the event happened: ``event_time``, else the payload's
    ``occurred_at``, else now; so retries of one notification send identical bytes.
    """
    when = event_time or payload.get("occurred_at")
    stamp = (_utc_iso(when) if isinstance(when, str)
             else dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"))
    envelope = {"type": event_type, "timestamp": stamp, "data": dict(payload)}
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"),
                      default=_json_default).encode("utf-8")


def build_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


# --- SSRF guard ---------------------------------------------------------------------------

def refusal_reason(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why ``address`` may not receive webhooks, or ``None`` if it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return refusal_reason(embedded, allow_private=allow_private)
    if address in _METADATA:
        return "cloud metadata address"
    if address.is_unspecified:
        return "unspecified address"
    if address.is_link_local:
        return "link-local address"
    if address.is_multicast:
        return "multicast address"
    if address.is_loopback:  # before "reserved": ::1 lies in the reserved ::/8
        return None if allow_private else "loopback address"
    if any(address in net for net in _ALWAYS_BLOCKED) or address.is_reserved:
        return "reserved address"
    if allow_private:
        return None
    if not address.is_global:
        return "private or non-public address"
    return None


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class _Target:
    urls: tuple[httpx.URL, ...]  # one per checked address, in resolver order
    host_header: str
    sni_hostname: str | None
    pool_key: PoolKey  # the original (scheme, host, port): which pool may serve it


async def check_target(url: str, *, allow_private: bool = False,
                       resolver: Resolver | None = None) -> _Target:
    """Validate ``url`` and resolve it to one acceptable address.

    Raises:
        TargetRefused: Bad scheme or URL, unresolvable host, or any resolved address refused.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise TargetRefused(f"invalid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise TargetRefused(f"scheme {parsed.scheme or '(none)'!r} not allowed (http/https only)")
    host = parsed.host
    if not host:
        raise TargetRefused("URL has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            answers = await (resolver or _system_resolver)(host, port)
        except (OSError, UnicodeError) as exc:
            raise TargetRefused(f"cannot resolve {host!r}: {exc}") from None
        addresses = []
        for answer in answers:
            try:
                addresses.append(ipaddress.ip_address(answer.split("%", 1)[0]))
            except ValueError:
                raise TargetRefused(f"{host!r} resolved to unparsable {answer!r}") from None
        if not addresses:
            raise TargetRefused(f"{host!r} did not resolve to any address")
    for address in addresses:
        reason = refusal_reason(address, allow_private=allow_private)
        if reason is not None:
            raise TargetRefused(f"target {host!r} resolves to {address}: {reason} refused")
    pinned = tuple(parsed.copy_with(host=str(a)) for a in dict.fromkeys(addresses))
    return _Target(urls=pinned, host_header=parsed.netloc.decode("ascii"),
                   sni_hostname=host if parsed.scheme == "https" and literal is None else None,
                   pool_key=(parsed.scheme, host.lower(), port))


# --- delivery -----------------------------------------------------------------------------

def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    if status in (408, 425, 429) or status >= 500:
        return "transient"
    return "business"


async def _snippet(response: httpx.Response) -> str:
    """The start of the body, for the error detail; a small body is read to its end so
    the connection goes back to its pool (an unread body closes it)."""
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= MAX_DRAIN_BODY:
            break
    text = data[:MAX_DETAIL_BODY].decode("utf-8", "replace")
    return " ".join(text.split())


async def _send(pools: HostPools, target: _Target, body: bytes,
                headers: dict[str, str], timeout_s: float) -> httpx.Response:
    """Send to the first address that accepts a connection (nothing is sent before that)."""
    client = pools.client(target.pool_key)
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
    for index, url in enumerate(target.urls):
        request = client.build_request("POST", url, content=body,
                                       headers={**headers, "host": target.host_header},
                                       timeout=httpx.Timeout(timeout_s), extensions=extensions)
        try:
            return await client.send(request, follow_redirects=False, stream=True)
        except httpx.ConnectError:
            if index == len(target.urls) - 1:
                raise
    raise httpx.ConnectError("no address to connect to")


async def _attempt(pools: HostPools, target: _Target, body: bytes,
                   headers: dict[str, str], timeout_s: float) -> DeliveryResult:
    try:
        async with asyncio.timeout(timeout_s):
            response = await _send(pools, target, body, headers, timeout_s)
            try:
                status = response.status_code
                outcome = _classify(status)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                if 300 <= status < 400:
                    location = response.headers.get("location", "")
                    detail = f"HTTP {status} redirect to {location!r} not followed"
                else:
                    snippet = await _snippet(response)
                    detail = f"HTTP {status} {response.reason_phrase}".rstrip()
                    if snippet and outcome != "delivered":
                        detail += f": {snippet}"
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        return DeliveryResult("transient", None, 1, f"timed out after {timeout_s:g}s")
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        return DeliveryResult("business", None, 1, f"invalid target: {exc}")
    except httpx.HTTPError as exc:
        return DeliveryResult("transient", None, 1,
                              f"{type(exc).__name__}: {exc}".rstrip(": "))
    return DeliveryResult(outcome, status, 1, detail,
                          retry_after if outcome == "transient" else None)


async def deliver(pools: HostPools, *, url: str, secret: str, msg_id: str,
                  payload: Mapping[str, Any], timeout_s: float, max_quick_retries: int = 2,
                  allow_private: bool = False, event_type: str = EVENT_TYPE,
                  event_time: str | None = None, quick_retry_budget_s: float = 5.0,
                  backoff_s: float = 0.25, resolver: Resolver | None = None,
                  stop: asyncio.Event | None = None) -> DeliveryResult:
    """POST one signed webhook, with a few quick retries for transient failures.

    Args:
        pools: Connection pools per receiver host; redirects are never followed.
        url: Receiver URL (http/https; checked by the SSRF guard).
        secret: ``whsec_<base64>``; never logged or returned.
        msg_id: ``webhook-id``; use :func:`webhook_id_for` so retries share it.
        payload: The event data (``advice.model_dump(mode="json")``); wrapped in the
            ``{"type", "timestamp", "data"}`` envelope by :func:`build_body`.
        timeout_s: Hard limit for each attempt, connect to last byte.
        max_quick_retries: Extra attempts for transient failures within this call.
        allow_private: Permit loopback/private receivers (development only).
        quick_retry_budget_s: Total waiting allowed between quick retries; a
            ``Retry-After`` beyond it ends the call as ``transient`` with ``retry_after_s``.
        backoff_s: First wait when the receiver gives no ``Retry-After`` (doubles).
        resolver: ``async (host, port) -> [address]`` instead of the system resolver.
        stop: when set, a quick-retry wait ends and the transient result is returned
            (the job's retry schedule takes over).
    """
    try:
        body = build_body(payload, event_type=event_type, event_time=event_time)
        build_headers(secret, msg_id, 0, body)  # validate the secret before any network I/O
    except (TypeError, ValueError) as exc:
        return DeliveryResult("business", None, 0, f"cannot prepare webhook: {exc}")
    try:
        target = await check_target(url, allow_private=allow_private, resolver=resolver)
    except TargetRefused as exc:
        return DeliveryResult("business", None, 0, f"target refused: {exc}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + quick_retry_budget_s
    quick = Schedule.exponential(backoff_s, quick_retry_budget_s, jitter=False)
    stop = stop or asyncio.Event()
    attempts = 0
    while True:
        attempts += 1
        # the signature covers the body only: the trace context rides beside it
        headers = {**build_headers(secret, msg_id, int(time.time()), body), **trace_headers()}
        result = await _attempt(pools, target, body, headers, timeout_s)
        result = DeliveryResult(result.outcome, result.status_code, attempts, result.detail,
                                result.retry_after_s)
        if result.outcome != "transient" or attempts > max_quick_retries:
            return result
        wait = (result.retry_after_s if result.retry_after_s is not None
                else quick.delay(attempts))
        if loop.time() + wait > deadline or await sleep_or_stop(stop, wait):
            return result
