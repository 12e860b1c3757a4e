"""``remitflow notify preview``: what a payee would get, rendered without sending."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from shared.domain.advice import RemittanceAdvice


def _advice_for(request_id: str) -> RemittanceAdvice | None:
    from shared.aws.clients import AwsClients
    from shared.pipeline.jobs import JobStore
    from shared.settings import load_settings
    from tools.stack import StackNames as Names

    settings = load_settings()

    async def go() -> RemittanceAdvice | None:
        async with AwsClients(settings) as clients:
            job = await JobStore(clients.dynamodb, Names(settings.prefix).remittances).get(
                request_id)
        if job is None or "advice" not in job.raw:
            return None
        return RemittanceAdvice.model_validate_json(job.raw["advice"])

    return asyncio.run(go())


def preview_command(args: argparse.Namespace) -> int:
    from services.notification.preview import preview

    if args.advice:
        advice = RemittanceAdvice.model_validate(json.loads(Path(args.advice).read_text()))
    else:
        found = _advice_for(args.request_id)
        if found is None:
            print(f"no enriched advice for {args.request_id} (not COMPLETED yet?)")
            return 1
        advice = found
    print(preview(advice))
    return 0
