"""Services as OS processes: the one way tests, the benchmark and the soak start them.

``remitflow run SERVICE`` in its own process on a free loopback port, with the
prefix and any overrides in its environment; stopped (SIGTERM, then SIGKILL) or
killed (``kill -9``, for crash tests) when the context ends.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    url: str
    port: int
    proc: subprocess.Popen[bytes]


@contextmanager
def service_process(service: str, prefix: str, env: dict[str, str] | None = None, *,
                    log: Path | None = None, capture: bool = False, graceful: bool = False,
                    port: int | None = None) -> Iterator[ServiceProcess]:
    """One service process; ``env`` overrides ``os.environ``.

    Args:
        log: write its output there (else discarded, or piped with ``capture``).
        capture: pipe its output, for a short run read after it stopped (a chatty
            process blocks on a full pipe).
        graceful: stop it with SIGTERM (drain) instead of SIGKILL at the end.
        port: its HTTP port (default: a free one).
    """
    port = port or free_port()
    proc_env = {**os.environ, "REMITFLOW_PREFIX": prefix, "REMITFLOW_HTTP_PORT": str(port),
                "REMITFLOW_HTTP_HOST": "127.0.0.1", **(env or {})}
    out = (log.open("wb") if log is not None
           else subprocess.PIPE if capture else subprocess.DEVNULL)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "run", service],
                                env=proc_env, stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log is not None and not isinstance(out, int):
            out.close()
    try:
        yield ServiceProcess(f"http://127.0.0.1:{port}", port, proc)
    finally:
        stop(proc, graceful=graceful)


def stop(proc: subprocess.Popen[bytes], *, graceful: bool = True) -> None:
    if proc.poll() is None:
        if graceful:
            proc.terminate()
            try:
                proc.wait(timeout=15)
                return
            except subprocess.TimeoutExpired:
                pass
        proc.kill()
    proc.wait(timeout=10)
