"""Dev/test faults are one mechanism read from settings (``shared/pipeline/faults.py``):
a crash point armed from ``REMITFLOW_FAULT_POINT``/``REMITFLOW_FAULT_AFTER`` kills a
real process exactly there, like ``kill -9``, and only there."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shared.settings import SettingsError, load_settings

# What a service process does at start (shared/runtime.py), then two crash points.
SCRIPT = """
import sys
from shared.pipeline.faults import arm, fault_point
from shared.runtime import serve  # noqa: F401  (the service entry point imports fine)
from shared.settings import load_settings

settings = load_settings()
arm(settings.faults.point, settings.faults.after)
fault_point("other.point")
print("passed other.point", flush=True)
fault_point("files.counted", reached=int(sys.argv[1]))
print("passed files.counted", flush=True)
"""


def run(reached: int, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REMITFLOW_FAULT")}
    return subprocess.run([sys.executable, "-c", SCRIPT, str(reached)], env={**clean, **env},
                          capture_output=True, text=True, timeout=30, check=False)


def test_a_crash_point_kills_the_process_there_and_nowhere_else() -> None:
    plain = run(1, REMITFLOW_FAULT_POINT="other.point")
    assert plain.returncode == 137 and plain.stdout == ""
    unarmed = run(1)
    assert unarmed.returncode == 0, unarmed.stderr
    assert unarmed.stdout.splitlines() == ["passed other.point", "passed files.counted"]


def test_a_counting_point_fires_only_from_its_count_and_never_without_one() -> None:
    counted = {"REMITFLOW_FAULT_POINT": "files.counted"}
    assert run(29, **counted, REMITFLOW_FAULT_AFTER="30").returncode == 0
    reached = run(30, **counted, REMITFLOW_FAULT_AFTER="30")
    assert reached.returncode == 137 and reached.stdout == "passed other.point\n"
    assert run(10_000, **counted).returncode == 0


def test_fault_settings_are_validated_like_every_other_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMITFLOW_FAULT_AFTER", "soon")
    with pytest.raises(SettingsError, match="REMITFLOW_FAULT_AFTER"):
        load_settings()
