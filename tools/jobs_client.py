"""``remitflow jobs list|redrive|resolve``: a thin client of the sweeper API."""

from __future__ import annotations

import argparse
import json
import os

import httpx


def jobs_command(args: argparse.Namespace) -> int:
    headers = {}
    token = os.environ.get("REMITFLOW_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(base_url=args.url, headers=headers, timeout=30) as client:
        if args.jobs_command == "list":
            cursor: str | None = None
            while True:
                params = {"table": args.table, "state": args.state}
                if cursor:
                    params["cursor"] = cursor
                resp = client.get("/v1/jobs", params=params)
                if resp.status_code != 200:
                    print(resp.text)
                    return 1
                page = resp.json()
                for job in page["jobs"]:
                    print(json.dumps(job))
                cursor = page.get("next_cursor")
                if not cursor:
                    return 0
        if args.jobs_command == "resolve":
            resp = client.post(f"/v1/jobs/{args.table}/{args.request_id}/resolve",
                               json={"outcome": args.outcome, "note": args.note})
        else:
            resp = client.post(f"/v1/jobs/{args.table}/{args.request_id}/redrive")
        print(json.dumps(resp.json(), indent=2))
        return 0 if resp.status_code < 300 else 1
