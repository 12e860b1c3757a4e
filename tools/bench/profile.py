"""Sampling profiles of the bench's processes under load (``py-spy``, from PyPI).

``py-spy record --gil --format raw`` writes collapsed stacks (``frame;frame;… count``)
of the thread holding the GIL, i.e. where Python CPU time goes (waiting is not sampled).
From them: the top five leaf functions (self time), the share of samples with a
``botocore``/``aiobotocore`` frame anywhere on the stack (SDK cost: serialising,
signing, parsing), and, for the emulator, inclusive shares by package (which part
of moto, werkzeug or botocore the CPU goes to).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")
PACKAGES = ("moto/stepfunctions", "moto/sqs", "moto/dynamodb", "moto/dynamodbstreams",
            "moto/sns", "moto/ses", "moto/core", "moto/utilities", "moto/moto_server",
            "werkzeug", "flask", "botocore", "boto3", "jinja2", "threading", "json",
            "xml", "asyncio", "antlr4")


def py_spy() -> str | None:
    exe = Path(sys.executable).with_name("py-spy")
    return str(exe) if exe.exists() else shutil.which("py-spy")


def start(pids: dict[str, int], seconds: float, out: Path) -> list[tuple[str, Path,
                                                                       subprocess.Popen[bytes]]]:
    """Start one ``py-spy record`` per process; they stop by themselves after ``seconds``."""
    exe = py_spy()
    if exe is None:
        return []
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for name, pid in pids.items():
        path = out / f"{name}.txt"
        proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--duration",
                                 str(int(seconds)), "--rate", "50", "--format", "raw",
                                 "--gil", "--nonblocking", "--output", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs.append((name, path, proc))
    return runs


def finish(runs: list[tuple[str, Path, subprocess.Popen[bytes]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, path, proc in runs:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        out[name] = summarise(path) if path.exists() else {"error": "no profile written"}
    return out


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for part in stack.split(";"):
        m = _FRAME.match(part.strip())
        if m:
            out.append((m.group("func"), m.group("file")))
    return out


def summarise(path: Path, top: int = 5) -> dict[str, Any]:
    leaf: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = sdk = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack)
        if not frames:
            continue
        total += n
        func, file = frames[-1]
        leaf[f"{func} ({_short(file)})"] += n
        files = [f for _, f in frames]
        if any("botocore" in f for f in files):
            sdk += n
        seen = {p for f in files for p in PACKAGES
                if f.startswith((f"{p}/", f"{p}.py")) or f"/{p}/" in f}
        for p in seen:
            packages[p] += n
    share = (lambda n: round(n / total, 3)) if total else (lambda n: 0.0)
    return {"samples": total,
            "top_self": [{"frame": k, "share": share(v)} for k, v in leaf.most_common(top)],
            "botocore_share": share(sdk),
            "inclusive_by_package": {k: share(v) for k, v in packages.most_common(10)}}


def _short(file: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file.rsplit("/", 2)[-1] if "/" in file else file
