"""No unauthenticated request body makes a service process allocate more than a few MiB.

Real service OS processes (``remitflow run``), a 200 MiB body streamed from a
generator (chunked, and with a ``content-length``), and the process's own peak
resident size (``VmHWM`` in ``/proc/<pid>/status``) before and after.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Env, service_process

MIB = 1024 * 1024
BODY_MIB = 200
# What a refused request may cost the process at most (the limit itself is 1 MiB).
GROWTH_LIMIT_MIB = 4


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def chunks() -> Iterator[bytes]:
    block = b"a=" + b"x" * (MIB - 2)
    for _ in range(BODY_MIB):
        yield block


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} never became healthy")


def send_big(url: str, path: str, *, with_length: bool,
             headers: dict[str, str] | None = None) -> int | None:
    """POST 200 MiB; the status, or None when the server closed the connection early."""
    sent = {"content-type": "application/x-www-form-urlencoded", **(headers or {})}
    if with_length:
        sent["content-length"] = str(BODY_MIB * MIB)
    try:
        return httpx.post(f"{url}{path}", content=chunks(), headers=sent,
                          timeout=120).status_code
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        return None


def console_cookie(url: str) -> dict[str, str]:
    """An anonymous console session (the sign-in form's own): the login form is read."""
    cookie = httpx.get(f"{url}/console/login", timeout=30).cookies["remitflow_console"]
    return {"cookie": f"remitflow_console={cookie}"}


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
def test_a_huge_body_is_refused_without_being_buffered(env: Env, with_length: bool) -> None:
    with service_process(env, "sweeper") as (url, proc):
        wait_ready(url)
        bearer = {"authorization": f"Bearer {os.environ['REMITFLOW_API_TOKEN']}"}
        cases = {  # name: (path, headers, the answer)
            "v1 without token": ("/v1/jobs/remittances/REQ-1/redrive", {}, 401),
            "v1 with token": ("/v1/deadletters/remittance-events/replay", bearer, 413),
            "console login": ("/console/login", console_cookie(url), 413),
            "console post without session": ("/console/redrive", {}, 403),
        }
        for path, headers, _ in cases.values():  # warm up: first-request imports
            httpx.post(f"{url}{path}", content=b"a=1", headers=headers, timeout=30)
        before = peak_rss_mib(proc.pid)
        answers = {name: send_big(url, path, with_length=with_length, headers=headers)
                   for name, (path, headers, _) in cases.items()}
        grown = peak_rss_mib(proc.pid) - before
        assert proc.poll() is None, "the service died"
    assert grown < GROWTH_LIMIT_MIB, f"peak RSS grew {grown:.1f} MiB; answers {answers}"
    # A declared length over the limit is refused before anything else; a streamed
    # body is refused where it passes the limit, or before it is read (no credentials).
    # None: the server closed the connection while the client was still sending.
    expected = {name: 413 if with_length else answer
                for name, (_, _, answer) in cases.items()}
    assert {n: a for n, a in answers.items() if a is not None} == {
        n: expected[n] for n, a in answers.items() if a is not None}, answers
    assert any(a is not None for a in answers.values()), answers
