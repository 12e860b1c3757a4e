"""Webhook connection pools, one per receiver host.

Webhook requests go to the address the SSRF guard checked (``webhook.py``), so the
URL a client sees carries an IP, and the TLS name travels separately (SNI and
certificate check use the original host name). A single shared httpx client pools
connections by *URL origin*, i.e. by that IP: a connection opened and verified for
payee A's host could then be handed to a request for payee B's host on the same
address, which B's certificate never vouched for.

:class:`HostPools` keeps one client, hence one pool, per ``(scheme, host, port)`` of
the *original* URL. Guarantees:

* a connection is only ever reused for the host name it was verified for;
* the number of clients is bounded (``max_hosts``, least recently used goes first);
  an evicted client is closed in the background (a request still running on it,
  possible only when ``max_hosts`` other hosts were contacted meanwhile, ends as a
  transient failure and is retried);
* each client keeps few idle connections (``keepalive_per_host``), so many payees
  cost a bounded number of sockets.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import OrderedDict
from typing import Final

import httpx

PoolKey = tuple[str, str, int]
DEFAULT_MAX_HOSTS: Final = 512


class HostPools:
    """A bounded LRU of httpx clients keyed by receiver ``(scheme, host, port)``.

    Args:
        timeout_s: default timeout of each client (requests pass their own too).
        verify: ``True`` (system trust store), or an ``ssl.SSLContext`` (tests trust
            their own CA). Never ``False`` in production.
        max_hosts: clients kept at once.
        keepalive_per_host: idle connections kept per host.
    """

    def __init__(self, *, timeout_s: float = 10.0, verify: ssl.SSLContext | bool = True,
                 max_hosts: int = DEFAULT_MAX_HOSTS, keepalive_per_host: int = 4) -> None:
        if max_hosts < 1:
            raise ValueError("max_hosts must be at least 1")
        self._timeout_s = timeout_s
        self._verify = verify
        self._max_hosts = max_hosts
        self._limits = httpx.Limits(max_keepalive_connections=keepalive_per_host,
                                    max_connections=max(keepalive_per_host, 16))
        self._clients: OrderedDict[PoolKey, httpx.AsyncClient] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._clients)

    def client(self, key: PoolKey) -> httpx.AsyncClient:
        """The client for ``key``, created on first use; marks it recently used."""
        if self._closed:
            raise RuntimeError("HostPools is closed")
        found = self._clients.get(key)
        if found is not None:
            self._clients.move_to_end(key)
            return found
        created = httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                    timeout=self._timeout_s, verify=self._verify,
                                    limits=self._limits)
        self._clients[key] = created
        while len(self._clients) > self._max_hosts:
            _, evicted = self._clients.popitem(last=False)
            task = asyncio.get_running_loop().create_task(evicted.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return created

    async def aclose(self) -> None:
        """Close every client; safe to call twice."""
        self._closed = True
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            await client.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
