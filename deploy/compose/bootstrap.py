"""Compose `bootstrap` service: wait for the AWS emulator, then exec `remitflow bootstrap`.

LocalStack is already healthy (depends_on). On moto (profile `moto`) this also waits
until the `moto-init` step has switched Step Functions execution on, so no workflow
starts against a moto that would never run it. Standard library only.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://localstack:4566").rstrip("/")
TIMEOUT_S = float(os.environ.get("BOOTSTRAP_WAIT_S", "120"))


def get(path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(ENDPOINT + path, timeout=3) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def moto_ready() -> bool | None:
    """None: not moto. True/False: moto with execution on/off."""
    status, body = get("/moto-api/config")
    if status != 200:
        return None
    try:
        return bool(json.loads(body).get("stepfunctions", {}).get("execute_state_machine"))
    except ValueError:
        return None


def main() -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            ready = moto_ready()
            if ready is None or ready:
                break
            print("bootstrap: waiting for moto-init (Step Functions execution)", flush=True)
        except OSError as exc:
            print(f"bootstrap: waiting for {ENDPOINT}: {exc}", flush=True)
        if time.monotonic() > deadline:
            sys.exit(f"bootstrap: {ENDPOINT} not ready after {TIMEOUT_S:.0f}s")
        time.sleep(2)
    args = ["remitflow", "bootstrap", *sys.argv[1:]]
    print(f"bootstrap: {ENDPOINT} ready; running {' '.join(args)}", flush=True)
    os.execvp(args[0], args)


if __name__ == "__main__":
    main()
