"""``remitflow dev`` owns its processes (real runner, real service processes, real ports).

SIGTERM or SIGHUP (what an IDE, a process manager or ``timeout`` sends) stops the
runner's services exactly as Ctrl-C does: afterwards no child process is left and
their ports are free. A port it needs that is already taken makes it refuse to
start within seconds, naming the process that holds it.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tools.ports import in_use
from tools.procs import free_port
from tools.stack import PORTS

ROOT = Path(__file__).resolve().parents[2]


def _free_offset() -> int:
    """An offset that puts every declared service port on a free port, below the
    ephemeral range (where an outgoing connection may take one at any moment)."""
    for _ in range(200):
        offset = random.randrange(20000, 32000) - min(PORTS.values())
        if not any(in_use(p + offset) for p in PORTS.values()):
            return offset
    raise RuntimeError("no free port range for the services")


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(proc.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@contextmanager
def runner(tmp_path: Path, emulator_port: int, offset: int) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "REMITFLOW_API_TOKEN": "dev-runner-test-token-0123456789"}
    log = (tmp_path / "runner.out").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "dev", "--no-demo", "--port", str(emulator_port),
         "--port-offset", str(offset)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        # never leave a test's processes behind (children first: once the runner is
        # gone they are no longer found as its children)
        for child in _children(proc.pid):
            os.kill(child, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_every_service_of_the_runner(tmp_path: Path, signum: int) -> None:
    offset = _free_offset()
    ports = {s: p + offset for s, p in PORTS.items()}
    with runner(tmp_path, free_port(), offset) as proc:
        deadline = time.monotonic() + 180
        while not all(_ready(p) for p in ports.values()):
            assert proc.poll() is None, (tmp_path / "runner.out").read_text()
            assert time.monotonic() < deadline, (tmp_path / "runner.out").read_text()
            time.sleep(0.5)
        children = _children(proc.pid)
        assert len(children) == len(PORTS), children   # one process per service

        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 0
        out = (tmp_path / "runner.out").read_text()
        assert "stopping services" in out and "stopped." in out, out
        assert [pid for pid in children if _alive(pid)] == []
        assert [p for p in ports.values() if in_use(p)] == []
        # each service drained and stopped on SIGTERM (its own log says so)
        for service in PORTS:
            log = (tmp_path / ".dev-logs" / f"{service}.log").read_text()
            assert "service.stopped" in log, log[-2000:]


@pytest.mark.parametrize("which", ["enrichment", "emulator"])
def test_a_taken_port_is_refused_naming_its_holder(tmp_path: Path, which: str) -> None:
    offset = _free_offset()
    emulator_port = free_port()
    taken = emulator_port if which == "emulator" else PORTS[which] + offset
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        with runner(tmp_path, emulator_port, offset) as proc:
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                code = None
            out = (tmp_path / "runner.out").read_text()
            assert code is not None and code != 0, out
            assert f"port {taken} ({which}) is in use by pid {os.getpid()}" in out, out
            assert _children(proc.pid) == []
    # nothing was started: the other ports are still free
    assert not any(in_use(p + offset) for p in PORTS.values())
