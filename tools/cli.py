"""``remitflow``: the command line (``docs/architecture.md``, "Commands")."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.startup import pause_collector, resume_collector

if TYPE_CHECKING:
    from shared.settings import Settings


def _settings(**overrides: Any) -> Any:
    from shared.settings import load_settings

    return load_settings(**overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from shared.runtime import serve
    from shared.settings import load_settings
    from tools.stack import PORTS, builder, service

    # the service's own model: its process validates the variables it reads
    settings = load_settings(service(args.service).settings)
    return asyncio.run(serve(args.service, settings, builder(args.service),
                             port=PORTS[args.service]))


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from shared.aws.clients import AwsClients
    from shared.logs import configure_logging
    from shared.provision.bootstrap import load_reference_data
    from tools.stack import bootstrap_stack

    settings = _settings()
    configure_logging(settings.log.level, "console")
    data = json.loads(Path(args.reference_data).read_text()) if args.reference_data else None

    async def go() -> None:
        async with AwsClients(settings) as clients:
            await bootstrap_stack(settings, clients, sfn_role_arn=args.sfn_role_arn)
            if data is not None:
                count = await load_reference_data(clients, settings, data)
                print(f"loaded {count} reference rows from {args.reference_data}")

    asyncio.run(go())
    return 0


def _send_files(args: argparse.Namespace, settings: Settings) -> int:
    """Upload bank files; with ``--wait``, print each file's outcome. Exit 1 when a
    file was quarantined, 3 when an outcome is not known within ``--wait-s``."""
    from shared.files.outcome import describe
    from tools.demo import upload_files, wait_for_files

    files = [(f"{args.partner}/{Path(f).name}", Path(f).read_bytes()) for f in args.bank_files]
    refs = asyncio.run(upload_files(settings, files))
    for ref in refs:
        print(f"uploaded s3://{ref.bucket}/{ref.key}")
    if not args.wait:
        return 0
    code = 0
    for ref, progress in zip(refs, asyncio.run(wait_for_files(settings, refs, args.wait_s)),
                             strict=True):
        print(f"{ref.key}:")
        for line in describe(progress):
            print(f"  {line}")
        if progress.state == "quarantined":
            code = max(code, 1)
        elif not progress.finished:
            code = 3
    return code


def cmd_send(args: argparse.Namespace) -> int:
    try:
        from tools.demo import generate_messages, send_messages
    except ImportError as exc:
        return _dev_only("send", exc)

    settings = _settings()
    if args.bank_files:
        if not re.fullmatch(r"[A-Z0-9_]{2,32}", args.partner):
            print(f"--partner {args.partner!r}: use 2-32 of A-Z 0-9 _", file=sys.stderr)
            return 2
        code = _send_files(args, settings)
        if code or not (args.files or args.generate):
            return code
    bodies: list[str] = [Path(f).read_text() for f in args.files]
    if args.generate:
        bodies += [json.dumps(m) for m in generate_messages(args.generate, prefix=args.id_prefix)]
    if not bodies and not args.bank_files:
        print("nothing to send: give JSON files, --file FILE.xml or --generate N",
              file=sys.stderr)
        return 2
    if not bodies:
        return 0
    sent = asyncio.run(send_messages(settings, bodies))
    print(f"sent {sent} message(s)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from shared.aws.clients import AwsClients
    from shared.pipeline.jobs import JobStore
    from tools.stack import StackNames as Names

    settings = _settings()

    async def go() -> dict[str, Any]:
        names = Names(settings.prefix)
        out: dict[str, Any] = {"request_id": args.request_id}
        async with AwsClients(settings) as clients:
            for key, table in (("remittance", names.remittances),
                               ("notification", names.notifications)):
                job = await JobStore(clients.dynamodb, table).get(args.request_id)
                out[key] = job.public() if job else None
        return out

    result = asyncio.run(go())
    print(json.dumps(result, indent=2, default=str))
    return 0 if result["remittance"] or result["notification"] else 1


def cmd_archive(args: argparse.Namespace) -> int:
    """``remitflow archive get REQ-ID``: an expired request's archived jobs (docs/runbook.md)."""
    from services.sweeper.service import archive_lookup
    from shared.aws.clients import AwsClients
    from tools.stack import KINDS

    settings = _settings()

    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {"request_id": args.request_id}
        async with AwsClients(settings) as clients:
            lookup = archive_lookup(settings, clients, KINDS)
            for kind in KINDS:
                found = await lookup.find(kind.table, args.request_id)
                out[kind.table] = ({"archive_key": found[0], "job": found[1]}
                                   if found else None)
        return out

    result = asyncio.run(go())
    print(json.dumps(result, indent=2, default=str))
    return 0 if any(v for k, v in result.items() if k != "request_id") else 1


def cmd_payees(args: argparse.Namespace) -> int:
    """``remitflow payees erase PAYEE-ID --note …``: ``POST /v1/payees/{id}/erase``."""
    import os

    import httpx

    token = os.environ.get("REMITFLOW_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=args.url, headers=headers, timeout=300) as client:
        resp = client.post(f"/v1/payees/{args.payee_id}/erase", json={"note": args.note})
    print(json.dumps(resp.json(), indent=2))
    return 0 if resp.status_code < 300 else 1


DEV_ONLY = ("remitflow {command}: the embedded AWS emulator (moto) is not installed. "
            "This is a development command; the runtime image ships without it. Install "
            "the development extra: pip install 'remitflow[dev]' (or run `make run` from a "
            "checkout); in a container use `remitflow run SERVICE` against AWS, LocalStack "
            "or moto server instead.")


DEV_TOOLING = ("remitflow {command}: developer tooling ({module}), which the runtime image "
               "does not ship; run it from a checkout (pip install -e '.[dev]').")


def _dev_only(command: str, exc: ImportError) -> int:
    module = getattr(exc, "name", "") or ""
    if module.startswith("tools."):
        print(DEV_TOOLING.format(command=command, module=module), file=sys.stderr)
        return 2
    if "moto" not in str(exc) and module not in ("moto", "moto.server"):
        raise exc
    print(DEV_ONLY.format(command=command), file=sys.stderr)
    return 2


def cmd_dev(args: argparse.Namespace) -> int:
    from tools.ports import PortsTaken, require_free
    from tools.stack import service_ports

    try:
        import moto  # noqa: F401  (the dev extra, absent from the runtime image)
    except ImportError as exc:
        return _dev_only("dev", exc)
    try:   # before the emulator and the demo are set up: a taken port fails fast
        require_free({"emulator": args.port, **service_ports(args.port_offset)},
                     command="remitflow dev")
    except PortsTaken as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1
    try:
        from tools.dev import run_dev
    except ImportError as exc:
        return _dev_only("dev", exc)

    return run_dev(port=args.port, demo=not args.no_demo, count=args.count,
                   port_offset=args.port_offset)


def cmd_emulator(args: argparse.Namespace) -> int:
    try:
        from shared.aws.emulator import serve_forever
    except ImportError as exc:
        return _dev_only("emulator", exc)

    serve_forever(args.host, args.port)
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from tools.notify_preview import preview_command

    return preview_command(args)


def cmd_jobs(args: argparse.Namespace) -> int:
    from tools.jobs_client import jobs_command

    return jobs_command(args)


def parser() -> argparse.ArgumentParser:
    from tools.stack import PORTS  # every service's declaration: the imports of start-up

    p = argparse.ArgumentParser(prog="remitflow", description="Event-driven remittance "
                                "pipeline on SQS, DynamoDB Streams, Step Functions and SNS.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("dev", help="run everything locally: emulator, services, demo traffic")
    d.add_argument("--no-demo", action="store_true", help="no demo traffic; bring your own")
    d.add_argument("--port", type=int, default=4566, help="emulator port (default 4566)")
    d.add_argument("--count", type=int, default=12, help="generated demo remittances")
    d.add_argument("--port-offset", type=int, default=0,
                   help="add this to every service's HTTP port (8081+N, …): a second runner")
    d.set_defaults(func=cmd_dev)

    r = sub.add_parser("run", help="run one service (what a container runs)")
    r.add_argument("service", choices=tuple(PORTS))
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("bootstrap", help="create/update all AWS resources idempotently")
    b.add_argument("--reference-data", metavar="FILE", help="also load payees and invoices")
    b.add_argument("--sfn-role-arn", help="role for Step Functions (real AWS); created if unset")
    b.set_defaults(func=cmd_bootstrap)

    s = sub.add_parser("send", help="publish partner notifications (files or generated)")
    s.add_argument("files", nargs="*", help="JSON files, one message each")
    s.add_argument("--generate", type=int, default=0, metavar="N", help="N generated messages")
    s.add_argument("--id-prefix", default="REQ-GEN", help="request id prefix for --generate")
    s.add_argument("--file", dest="bank_files", action="append", default=[], metavar="FILE.xml",
                   help="upload an ISO 20022 bank file (pain.002, camt.054) to the "
                        "partner-files bucket as PARTNER/FILE (repeatable)")
    s.add_argument("--partner", default="FIRSTBANK",
                   help="partner code for --file: the key prefix (default FIRSTBANK)")
    s.add_argument("--wait", action="store_true",
                   help="with --file: wait for each file's outcome and print it (exit 1 if "
                        "quarantined, 3 if unknown after --wait-s)")
    s.add_argument("--wait-s", type=float, default=300.0, metavar="S",
                   help="how long --wait waits (default 300)")
    s.set_defaults(func=cmd_send)

    st = sub.add_parser("status", help="show a request's remittance and notification jobs")
    st.add_argument("request_id")
    st.set_defaults(func=cmd_status)

    py = sub.add_parser("payees", help="payee data: erasure (through the sweeper API)")
    pysub = py.add_subparsers(dest="payees_command", required=True)
    pe = pysub.add_parser("erase", help="erase a payee's personal data everywhere (audited)")
    pe.add_argument("payee_id")
    pe.add_argument("--note", required=True, help="why (kept in the audit)")
    pe.add_argument("--url", default="http://127.0.0.1:8083", help="sweeper API")
    pe.set_defaults(func=cmd_payees)

    a = sub.add_parser("archive", help="expired jobs in the archive (the financial record)")
    asub = a.add_subparsers(dest="archive_command", required=True)
    ag = asub.add_parser("get", help="a request's archived jobs, found by request id")
    ag.add_argument("request_id")
    ag.set_defaults(func=cmd_archive)

    e = sub.add_parser("emulator", help="run the embedded AWS emulator alone")
    e.add_argument("--host", default="127.0.0.1")
    e.add_argument("--port", type=int, default=4566)
    e.set_defaults(func=cmd_emulator)

    n = sub.add_parser("notify", help="notification tools")
    nsub = n.add_subparsers(dest="notify_command", required=True)
    pv = nsub.add_parser("preview", help="render what a payee would get, without sending")
    src = pv.add_mutually_exclusive_group(required=True)
    src.add_argument("--request-id", help="a remittance already enriched")
    src.add_argument("--advice", metavar="FILE", help="an advice JSON file")
    pv.set_defaults(func=cmd_preview)

    j = sub.add_parser("jobs", help="list, re-drive and resolve jobs through the sweeper API")
    jsub = j.add_subparsers(dest="jobs_command", required=True)
    jl = jsub.add_parser("list", help="jobs by state")
    jl.add_argument("--table", default="remittances", choices=("remittances", "notifications"))
    jl.add_argument("--state", default="failed", choices=("retry", "failed", "running"))
    jr = jsub.add_parser("redrive", help="re-drive a FAILED or REJECTED job")
    jr.add_argument("request_id")
    jr.add_argument("--table", default="remittances", choices=("remittances", "notifications"))
    js = jsub.add_parser("resolve", help="settle a FAILED send whose outcome is unknown")
    js.add_argument("request_id")
    js.add_argument("--table", default="notifications", choices=("remittances", "notifications"))
    decision = js.add_mutually_exclusive_group(required=True)
    decision.add_argument("--sent", dest="outcome", action="store_const", const="sent",
                          help="it was delivered: mark SENT, send nothing")
    decision.add_argument("--not-sent", dest="outcome", action="store_const", const="not_sent",
                          help="it was not delivered: clear the intent and send again")
    js.add_argument("--note", default="", help="why (kept in the job's history)")
    for x in (jl, jr, js):
        x.add_argument("--url", default="http://127.0.0.1:8083", help="sweeper API")
        x.set_defaults(func=cmd_jobs)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    pause_collector()            # for the imports below (shared/startup.py)
    try:
        args = parser().parse_args(argv)
        if args.func not in (cmd_run, cmd_emulator):
            resume_collector()   # a service or the emulator resumes it once up
        return int(args.func(args) or 0)
    finally:
        resume_collector()       # whatever happened (--help, a bad argument, a failed start)


if __name__ == "__main__":
    sys.exit(main())
