"""Compose `bootstrap` service: wait for the AWS emulator, then exec `remitflow bootstrap`.

LocalStack is already healthy (depends_on). On moto (profile `moto`) this repeats the
`moto-init` step (idempotent: switch Step Functions execution on) before bootstrapping,
because moto's GET /moto-api/config does not report that switch and no workflow may
start against a moto that would never run it. Standard library only.

It also loads the demo reference data (payees, invoices shipped in the package at
``shared/contracts/examples/reference-data.json``), so the demo traffic of
``remitflow send --generate`` enriches instead of being rejected as unknown payees.
``BOOTSTRAP_REFERENCE_DATA``: ``demo`` (default), ``none``, or a path to your own file.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://localstack:4566").rstrip("/")
TIMEOUT_S = float(os.environ.get("BOOTSTRAP_WAIT_S", "120"))
MOTO_CONFIG = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()


def call(path: str, body: bytes | None = None) -> int:
    """HTTP status of GET (or POST with body) ENDPOINT+path; OSError if unreachable."""
    req = urllib.request.Request(ENDPOINT + path, data=body, method="POST" if body else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def emulator_ready() -> bool:
    if not 200 <= call("/moto-api/config") < 300:
        return True  # not moto: LocalStack is healthy already, real AWS needs nothing
    ok = 200 <= call("/moto-api/config", MOTO_CONFIG) < 300
    if ok:
        print("bootstrap: moto Step Functions execution on", flush=True)
    return ok


def reference_data() -> str | None:
    """The file ``--reference-data`` should load, or None (``BOOTSTRAP_REFERENCE_DATA``)."""
    choice = os.environ.get("BOOTSTRAP_REFERENCE_DATA", "demo")
    if choice == "none":
        return None
    if choice != "demo":
        return choice
    from importlib.resources import files

    return str(files("shared.contracts.examples").joinpath("reference-data.json"))


def command(extra: list[str]) -> list[str]:
    args = ["remitflow", "bootstrap", *extra]
    data = reference_data()
    if data is not None and "--reference-data" not in extra:
        args += ["--reference-data", data]
    return args


def main() -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            if emulator_ready():
                break
        except OSError as exc:
            print(f"bootstrap: waiting for {ENDPOINT}: {exc}", flush=True)
        if time.monotonic() > deadline:
            sys.exit(f"bootstrap: {ENDPOINT} not ready after {TIMEOUT_S:.0f}s")
        time.sleep(2)
    args = command(sys.argv[1:])
    print(f"bootstrap: {ENDPOINT} ready; running {' '.join(args)}", flush=True)
    os.execvp(args[0], args)


if __name__ == "__main__":
    main()
