"""Split multi-document YAML into one file per object, for kubernetes-validate.

    python deploy/split_manifests.py [--skip-kinds "A B"] IN.yaml [IN2.yaml ...] OUTDIR

Kinds in --skip-kinds (CRDs kubernetes-validate has no schema for) are left out,
and listed so the skip is visible.
"""

import argparse
import pathlib
import sys

import yaml


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-kinds", default="")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    *inputs, outdir = args.paths
    skip = set(args.skip_kinds.split())
    out = pathlib.Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    skipped: list[str] = []
    for path in inputs:
        for doc in yaml.safe_load_all(pathlib.Path(path).read_text()):
            if not doc:
                continue
            kind, name = doc["kind"], doc["metadata"]["name"]
            if kind in skip:
                skipped.append(f"{kind}/{name}")
                continue
            written += 1
            target = out / f"{written:03d}-{kind.lower()}-{name}.yaml"
            target.write_text(yaml.safe_dump(doc, sort_keys=False))
    print(f"   {written} objects to validate", file=sys.stderr)
    if skipped:
        print(f"   not validated (CRD kinds): {', '.join(skipped)}", file=sys.stderr)
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
