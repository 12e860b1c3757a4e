"""Compose `moto-init`: switch moto's Step Functions execution on (after every moto start).

Equivalent to:
  curl -X POST http://moto:5000/moto-api/config \
       -d '{"stepfunctions": {"execute_state_machine": true}}'
"""

import json
import os
import sys
import time
import urllib.request

ENDPOINT = os.environ.get("MOTO_ENDPOINT", "http://moto:5000").rstrip("/")
BODY = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()

for attempt in range(30):
    try:
        req = urllib.request.Request(f"{ENDPOINT}/moto-api/config", data=BODY, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()
        print(f"moto-init: Step Functions execution on at {ENDPOINT}", flush=True)
        sys.exit(0)
    except OSError as exc:
        print(f"moto-init: attempt {attempt + 1}: {exc}", flush=True)
        time.sleep(2)
sys.exit("moto-init: moto did not accept the config")
