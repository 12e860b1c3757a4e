"""The chart's scratch space and the bank-file limit cannot disagree (issue 24,
scenario 3): on main /tmp was 64Mi while a file could be 512 MiB and was written
twice, so any file above ~32 MiB got the enrichment pod evicted."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.enrichment.settings import EnrichmentSettings

CHART = Path(__file__).resolve().parents[2] / "k8s" / "charts" / "remitflow"
HELM = shutil.which("helm") or str(Path(sys.executable).parent / "helm")
MiB = 1 << 20


def render(*args: str) -> list[dict[str, Any]]:
    out = subprocess.run([HELM, "template", "r", str(CHART), *args], capture_output=True,
                         check=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def enrichment(docs: list[dict[str, Any]]) -> tuple[int, dict[str, str]]:
    """(emptyDir bytes, env) of the enrichment Deployment."""
    dep = next(d for d in docs if d["kind"] == "Deployment"
               and d["metadata"]["name"].endswith("enrichment"))
    pod = dep["spec"]["template"]["spec"]
    size = next(v["emptyDir"]["sizeLimit"] for v in pod["volumes"] if v["name"] == "tmp")
    assert size.endswith("Mi")
    env = {e["name"]: e.get("value", "") for e in pod["containers"][0]["env"]}
    return int(size[:-2]) * MiB, env


@pytest.mark.skipif(not Path(HELM).exists(), reason="helm not installed")
@pytest.mark.parametrize("args", [(), ("--set", "partnerFiles.maxFileMiB=1024",
                                       "--set", "partnerFiles.filesInFlight=4")])
def test_scratch_holds_every_file_in_flight(args: tuple[str, ...]) -> None:
    scratch, env = enrichment(render(*args))
    defaults = EnrichmentSettings.model_fields
    max_bytes = int(env.get("REMITFLOW_PARTNER_FILES_MAX_BYTES")
                    or defaults["partner_files_max_bytes"].default)
    in_flight = int(env.get("REMITFLOW_PARTNER_FILES_MAX_IN_FLIGHT")
                    or defaults["partner_files_max_in_flight"].default)
    assert scratch >= max_bytes * in_flight + 16 * MiB


@pytest.mark.skipif(not Path(HELM).exists(), reason="helm not installed")
@pytest.mark.parametrize("args", [
    ("--set", "tmpSizeLimit=64Mi"),
    ("--set", "extraEnv[0].name=REMITFLOW_PARTNER_FILES_MAX_BYTES",
     "--set", "extraEnv[0].value=536870912"),
    ("--set", "services.enrichment.env[0].name=REMITFLOW_PARTNER_FILES_MAX_IN_FLIGHT",
     "--set", "services.enrichment.env[0].value=8"),
])
def test_values_that_could_make_them_disagree_are_refused(args: tuple[str, ...]) -> None:
    with pytest.raises(subprocess.CalledProcessError) as info:
        render(*args)
    assert b"schema" in info.value.stderr
