"""CDK app for remitflow: ``cdk deploy`` from this folder (``docs/deploy.md``).

``python app.py`` synthesises without the ``cdk`` CLI (``make check-deploy`` does,
into ``cdk.out``). Context switches are listed in ``remitflow_stack.StackOptions``
(``cdk deploy -c prefix=acme -c kms_key_arn=arn:...``). Settings that shape the
workflows (timeouts, sender e-mail) are read from ``REMITFLOW_*`` variables, as the
services read them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

# jsii's banner about Node 20's end of life (synth works on it offline; TOOLING notes).
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk  # noqa: E402
from remitflow_stack import RemitflowStack, StackOptions  # noqa: E402

from shared.settings import Settings  # noqa: E402


def build(outdir: str | None = None) -> cdk.App:
    if outdir is None and "CDK_OUTDIR" not in os.environ:
        outdir = str(Path(__file__).resolve().parent / "cdk.out")
    app = cdk.App(outdir=outdir, analytics_reporting=False)
    options = StackOptions.from_context(app.node)
    settings = Settings(prefix=options.prefix)
    env = cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
                          region=os.environ.get("CDK_DEFAULT_REGION"))
    RemitflowStack(app, app.node.try_get_context("stack_name") or f"{options.prefix}-stack",
                   options=options, settings=settings, env=env,
                   description="remitflow: tables, queues, topic, workflows, roles",
                   synthesizer=cdk.DefaultStackSynthesizer(generate_bootstrap_version_rule=False))
    return app


if __name__ == "__main__":
    build().synth()
