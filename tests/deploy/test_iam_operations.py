"""IAM from the code's own calls: every AWS operation a service makes is one its policy allows.

Emulators do not enforce IAM, so a call added without a grant would only fail on AWS.
This runs the pipeline end to end with each service as its own process, reads the
``remitflow_aws_requests_total`` labels from each one's ``/metrics`` and checks them
against the service's grants in ``tools/iam.py`` and the policy file that ships
(``deploy/iam/<service>.json``).
"""

from __future__ import annotations

from tests.helpers import Env, job_in
from tests.pipeline_procs import (
    SERVICES,
    all_ready,
    aws_calls,
    metrics_text,
    remittance,
    services,
)
from tools import iam


def test_policy_files_are_generated_from_the_operations() -> None:
    stale = [str(p) for p, text in iam.rendered().items() if p.read_text() != text]
    assert not stale, f"run python -m tools.iam --write; stale: {stale}"


def test_every_aws_call_has_a_grant() -> None:
    assert iam.action_of("dynamodb-streams", "GetRecords") == "dynamodb:GetRecords"
    assert iam.action_of("sfn", "SendTaskSuccess") == "states:SendTaskSuccess"
    assert iam.action_of("sqs", "DeleteMessageBatch") == "sqs:DeleteMessage"


async def test_calls_made_end_to_end_are_allowed(env: Env) -> None:
    # Same heartbeat as the env fixture's settings, which bootstrap wrote into the workflow.
    with services(env.settings.prefix, REMITFLOW_TASK_HEARTBEAT_S="5") as urls:
        await all_ready(urls)
        await env.send(remittance("REQ-IAM-1"))
        await job_in(env.store("remittances"), "REQ-IAM-1", "COMPLETED", timeout_s=60)
        await job_in(env.store("notifications"), "REQ-IAM-1", "SENT", timeout_s=60)
        calls = {s: await aws_calls(urls[s]) for s in SERVICES}
        enrichment_metrics = await metrics_text(urls["enrichment"])
    missing: dict[str, list[str]] = {}
    for service in SERVICES:
        assert calls[service], f"{service} reported no AWS calls"
        shipped = iam.policy_actions(iam.IAM_DIR / f"{service}.json")
        granted = iam.allowed_actions(service)
        actions = {iam.action_of(svc, op) for svc, op in calls[service]}
        gaps = sorted(a for a in actions if a not in shipped or a not in granted)
        if gaps:
            missing[service] = gaps
    assert not missing, f"AWS calls without a grant: {missing}"
    # The stream consumer queries its leases (it once scanned them, ungranted: the policy
    # gap this test was written for).
    assert ("dynamodb", "Query") in calls["enrichment"]
    # The owner of a dead-letter queue exports its depth (the alert works without the sweeper).
    names = env.names
    for dlq in (names.dlq(names.remittance_events), names.dlq(names.enrichment_tasks)):
        assert f'remitflow_queue_messages{{queue="{dlq}"}}' in enrichment_metrics, dlq
