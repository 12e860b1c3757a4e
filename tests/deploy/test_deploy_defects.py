"""Deploy defects that a person would hit first: compose without reference data, the
runtime image's dev-only commands."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compose_bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "compose_bootstrap", ROOT / "deploy" / "compose" / "bootstrap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compose_bootstrap_loads_the_demo_reference_data(
        monkeypatch: pytest.MonkeyPatch) -> None:
    module = _compose_bootstrap()
    monkeypatch.delenv("BOOTSTRAP_REFERENCE_DATA", raising=False)
    args = module.command([])
    assert args[:2] == ["remitflow", "bootstrap"] and "--reference-data" in args
    data = json.loads(Path(args[args.index("--reference-data") + 1]).read_text())
    assert data["payees"] and data["invoices"]
    monkeypatch.setenv("BOOTSTRAP_REFERENCE_DATA", "none")
    assert module.command([]) == ["remitflow", "bootstrap"]


@pytest.mark.parametrize("command", [["dev", "--no-demo"], ["emulator"]])
def test_dev_only_commands_explain_themselves_without_moto(tmp_path: Path,
                                                           command: list[str]) -> None:
    """The runtime image has no moto (dev extra): say so instead of a traceback."""
    blocker = tmp_path / "moto"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('No module named moto')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-m", "tools.cli", *command], env=env,
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pip install 'remitflow[dev]'" in proc.stderr


def test_container_healthcheck_knows_the_service_ports(tmp_path: Path) -> None:
    """The image's stdlib-only healthcheck reads the ports the image writes at build time
    from the services' declarations (``python -m tools.stack --ports``, Dockerfile)."""
    import runpy

    from tools.stack import PORTS

    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "python -m tools.stack --ports > /opt/remitflow/ports.json" in dockerfile
    assert "COPY deploy/docker/healthcheck.py /opt/remitflow/healthcheck.py" in dockerfile
    written = subprocess.run([sys.executable, "-m", "tools.stack", "--ports"], cwd=ROOT,
                             capture_output=True, text=True, check=True, timeout=60).stdout
    assert json.loads(written) == PORTS
    here = ROOT / "deploy" / "docker" / "healthcheck.py"
    check = runpy.run_path(str(here), run_name="healthcheck")
    for service, port in PORTS.items():
        cmdline = ["tini", "-g", "--", "remitflow", "run", service, ""]
        assert check["service_port"](cmdline, json.loads(written)) == port
    assert check["service_port"](["tini", "--", "remitflow", "--help", ""], PORTS) is None
