"""OS processes of a bench run: the emulator and the services, and what /proc says about them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

LOG_DIR = Path(".dev-logs")
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds (/proc/<pid>/stat fields 14 and 15)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def mem_mib(pid: int, key: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of one process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class Proc:
    """One child process with its log in ``.dev-logs/<name>.log``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        LOG_DIR.mkdir(exist_ok=True)
        self.name = name
        self.log_path = LOG_DIR / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(argv, env=env, stdout=log, stderr=log,
                                          start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    def hwm_mib(self) -> float:
        return mem_mib(self.pid, "VmHWM")

    def rss_mib(self) -> float:
        return mem_mib(self.pid, "VmRSS")

    def stop(self, grace_s: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class Emulator(Proc):
    """``python -m tools.cli emulator --port P``: its CPU is not the services'."""

    def __init__(self, port: int, env: dict[str, str], name: str = "bench-emulator") -> None:
        super().__init__(name, [sys.executable, "-m", "tools.cli", "emulator",
                                "--port", str(port)], {**env, "MOTO_PORT": str(port)})
        self.endpoint = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while b"emulator ready" not in self.log_path.read_bytes():
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"emulator did not start; see {self.log_path}")
            time.sleep(0.1)


class Service(Proc):
    """``python -m tools.cli run SERVICE`` on its own HTTP port."""

    def __init__(self, service: str, port: int, env: dict[str, str], prefix: str) -> None:
        super().__init__(f"{prefix}-{service}", [sys.executable, "-m", "tools.cli", "run",
                                                 service],
                         {**env, "REMITFLOW_HTTP_PORT": str(port)})
        self.service = service
        self.port = port

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz",
                                        timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def metrics(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        """Every ``remitflow_*`` sample: name → {sorted label pairs: value}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return parse_metrics(text)


def parse_metrics(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for line in text.splitlines():
        if not line.startswith("remitflow_"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels: list[tuple[str, str]] = []
        for part in rest.rstrip("}").split('",'):
            if "=" in part:
                k, _, v = part.partition("=")
                labels.append((k.strip(), v.strip().strip('"')))
        out[name][tuple(sorted(labels))] = float(value)
    return out


def aws_calls(samples: dict[str, dict[tuple[tuple[str, str], ...], float]],
              name: str = "remitflow_aws_requests_total") -> dict[str, float]:
    """``remitflow_aws_requests_total`` (or another ``{service,operation}`` counter, e.g.
    ``remitflow_aws_empty_reads_total``) as ``{"service.Operation": count}``."""
    out: dict[str, float] = {}
    for labels, value in samples.get(name, {}).items():
        d = dict(labels)
        out[f"{d['service']}.{d['operation']}"] = value
    return out


def counter_sum(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str,
                **match: str) -> float:
    return sum(v for labels, v in samples.get(name, {}).items()
               if all(dict(labels).get(k) == want for k, want in match.items()))
