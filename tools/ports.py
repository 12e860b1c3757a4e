"""Who holds a TCP port: the dev runner refuses to start on a taken one and names the holder.

A port counts as taken when a socket listens on it (any address) or when binding
``127.0.0.1:port`` fails. The holder is found the way ``ss -tanp`` finds it: the
socket's inode from ``/proc/net/tcp`` and ``/proc/net/tcp6`` (a listener first, else
any socket bound to the port), then the process whose ``/proc/<pid>/fd`` links to
``socket:[inode]`` (only processes this user may read; otherwise the message says so).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
LISTEN = "0A"   # TCP_LISTEN in /proc/net/tcp's ``st`` column


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str


class PortsTaken(RuntimeError):
    """A port the runner needs is in use; the message names each port and its holder."""


def _inodes(port: int, *, listening: bool) -> set[str]:
    """Inodes of the TCP sockets bound to local ``port`` (only listening ones, or any)."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and (fields[3] == LISTEN or not listening) \
                    and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] != "0":
                inodes.add(fields[9])
    return inodes


def _command(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def holders(port: int) -> list[Holder]:
    """The processes holding ``port`` (those this user can see): its listeners, else any
    socket bound to it (an outgoing connection that happens to use it, say)."""
    targets = {f"socket:[{inode}]"
               for inode in _inodes(port, listening=True) or _inodes(port, listening=False)}
    if not targets:
        return []
    found: list[Holder] = []
    for proc in PROC.iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if str(fd.readlink()) in targets:
                    found.append(Holder(int(proc.name), _command(int(proc.name))))
                    break
            except OSError:
                continue
    return found


def in_use(port: int) -> bool:
    """True when something listens on ``port`` or ``127.0.0.1:port`` cannot be bound."""
    if _inodes(port, listening=True):
        return True
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and moto bind
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def require_free(ports: Mapping[str, int], *, command: str) -> None:
    """Raise :class:`PortsTaken` naming every taken port of ``ports`` (what → port)."""
    problems = []
    for what, port in ports.items():
        if not in_use(port):
            continue
        found = holders(port)
        who = ("; ".join(f"pid {h.pid} ({h.command})" for h in found) if found else
               f"a process this user cannot see (try: ss -tanp 'sport = :{port}')")
        problems.append(f"  port {port} ({what}) is in use by {who}")
    if problems:
        pids = " ".join(str(h.pid) for p in ports.values() for h in holders(p))
        hint = f"stop it (kill {pids}) or " if pids else ""
        raise PortsTaken(f"{command}: cannot start, a port it needs is taken:\n"
                         + "\n".join(problems)
                         + f"\n{hint}free the port, then start again.")
