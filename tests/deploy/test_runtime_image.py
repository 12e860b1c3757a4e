"""The runtime image ships the runtime CLI and no developer tooling.

The ``Dockerfile`` copies ``shared/``, ``services/`` and a list of ``tools/`` files;
this test lays out exactly that file set in a scratch directory and runs it there (no
Docker needed): every service's ``build`` and the bootstrap resolve, ``remitflow
--help`` and the port list work, and a developer command says it is not in the image
instead of failing with a traceback. Nothing of the bench, soak, demo, dev runner or
test receivers is in the set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLING = ("bench", "soak", "demo", "dev", "procs", "ports", "webhook_receiver",
           "otlp_receiver", "ratebench", "tracebench", "iam", "iso4217")

CHECK = """
import contextlib, io, json
from tools.stack import SERVICES, builder, bootstrap_stack, ports_json  # noqa: F401
for service in SERVICES:
    builder(service.name)
import tools.cli, tools.jobs_client, tools.notify_preview  # noqa: E401, F401
tools.cli.parser().format_help()
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = tools.cli.main(["send", "--generate", "1"])
print(json.dumps({"ports": json.loads(ports_json()), "send": code, "said": err.getvalue()}))
"""


def copied_tools() -> list[str]:
    """The ``tools/`` files the Dockerfile copies (one COPY, continued over lines)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if re.match(r"COPY\s+tools/", ln))
    sources = line.split()[1:-1]
    assert all(s.startswith("tools/") and s.endswith(".py") for s in sources), line
    return sources


def image_tree(tmp: Path) -> Path:
    for package in ("shared", "services"):
        shutil.copytree(ROOT / package, tmp / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for source in copied_tools():
        (tmp / source).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / source, tmp / source)
    return tmp


# Runs a module as the image would: the checkout's editable install (a meta path
# finder that would serve any tools/ module from the repository) is not in the image.
LAUNCH = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def run(tree: Path, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "REMITFLOW_API_AUTH": "disabled"}
    return subprocess.run([sys.executable, "-c", LAUNCH, module, *args], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_image_has_no_developer_tooling() -> None:
    names = {Path(s).stem for s in copied_tools()}
    assert "cli" in names and "stack" in names
    assert names.isdisjoint(TOOLING), names & set(TOOLING)
    # the build context is an allow-list: each copied file must be in it
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    assert [s for s in copied_tools() if f"!{s}" not in allowed] == []


def test_the_runtime_cli_runs_from_the_image_file_set(tmp_path: Path) -> None:
    tree = image_tree(tmp_path)
    (tree / "image_check.py").write_text(CHECK)
    checked = run(tree, "image_check")
    assert checked.returncode == 0, checked.stderr
    out = json.loads(checked.stdout)
    assert out["ports"]["sweeper"] == 8083
    # a developer command says it is not in the image, instead of a traceback
    assert out["send"] == 2 and "does not ship" in out["said"], out
