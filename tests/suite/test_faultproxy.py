"""The fault proxy's recorder judges AWS calls only: what it lets through unsigned is kept apart."""

from __future__ import annotations

import httpx

from shared.aws.clients import AwsClients
from tests.faultproxy import FaultProxy
from tests.helpers import Env, replace_settings


async def test_recording_keeps_unsigned_requests_out_of_the_calls(env: Env) -> None:
    async with FaultProxy(env.endpoint) as proxy:
        proxy.record_all()
        async with httpx.AsyncClient(base_url=proxy.endpoint) as stray:   # a scrape, say
            await stray.get("/metrics", headers={"User-Agent": "Prometheus/3"})
        queue = env.names.remittance_events
        async with AwsClients(replace_settings(env.settings,
                                               aws_endpoint_url=proxy.endpoint)) as clients:
            await clients.sqs.get_queue_url(QueueName=queue)
    assert proxy.unsigned == ["GET /metrics (Prometheus/3)"]
    assert proxy.calls is not None
    assert [target for target, _ in proxy.calls] == ["AmazonSQS.GetQueueUrl"]
