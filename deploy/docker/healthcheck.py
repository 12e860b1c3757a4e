"""Container HEALTHCHECK: GET /healthz on this container's service port.

The port is REMITFLOW_HTTP_PORT when set, otherwise the declared port of the
service named on PID 1's command line (``remitflow run SERVICE``), read from
``ports.json`` beside this file: the image writes it at build time from the
services' declarations (``python -m tools.stack --ports``). Standard library only:
it runs every few seconds.
"""

import json
import os
import sys
import urllib.request
from pathlib import Path

PORTS_FILE = Path(__file__).with_name("ports.json")


def service_port(args: list[str], ports: dict[str, int]) -> int | None:
    """The port of the service ``remitflow run SERVICE`` names in ``args``, if any."""
    for i, arg in enumerate(args[:-1]):
        if arg == "run" and args[i + 1] in ports:
            return ports[args[i + 1]]
    return None


def port() -> int:
    if os.environ.get("REMITFLOW_HTTP_PORT"):
        return int(os.environ["REMITFLOW_HTTP_PORT"])
    try:
        with open("/proc/1/cmdline", "rb") as fh:
            args = fh.read().decode(errors="replace").split("\0")
    except OSError:
        args = []
    try:
        ports = json.loads(PORTS_FILE.read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"healthcheck: REMITFLOW_HTTP_PORT unset and {PORTS_FILE} unreadable ({exc})")
    found = service_port(args, ports)
    if found is None:
        sys.exit("healthcheck: no service on the command line and REMITFLOW_HTTP_PORT unset")
    return found


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
