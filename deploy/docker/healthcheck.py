"""Container HEALTHCHECK: GET /healthz on this container's service port.

The port is REMITFLOW_HTTP_PORT when set, otherwise the default of the service
named on PID 1's command line (``remitflow run SERVICE``). Standard library only.
"""

import os
import sys
import urllib.request

# Standard library only (it runs every few seconds): a copy of tools/stack.py's PORTS,
# held equal to it by tests/deploy/test_deploy_defects.py.
DEFAULT_PORTS = {"enrichment": 8081, "notification": 8082, "sweeper": 8083}


def port() -> int:
    if os.environ.get("REMITFLOW_HTTP_PORT"):
        return int(os.environ["REMITFLOW_HTTP_PORT"])
    try:
        with open("/proc/1/cmdline", "rb") as fh:
            args = fh.read().decode(errors="replace").split("\0")
    except OSError:
        args = []
    for name, number in DEFAULT_PORTS.items():
        if name in args:
            return number
    sys.exit("healthcheck: no service on the command line and REMITFLOW_HTTP_PORT unset")


def main() -> None:
    url = f"http://127.0.0.1:{port()}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            sys.exit(0 if resp.status == 200 else 1)
    except Exception as exc:  # any failure is "unhealthy"
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
