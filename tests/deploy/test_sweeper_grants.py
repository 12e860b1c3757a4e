"""The sweeper's policy covers what the sweeper does, resources included.

The sweeper's operator paths (console overview, prefix search, the rejected list,
the request timeline with its execution history, dead-letter peek, replay and
delete) run in-process with every AWS call going through a recording proxy
(``tests/faultproxy.py``); each recorded call's IAM action and resource ARN must be
allowed by the policy ``tools/iam.py`` renders for the sweeper, matched the way IAM
matches (``*`` and ``?`` wildcards in the statement's resources). Emulators do not
enforce this (moto only evaluates SQS resources: ``docs/deploy.md``), so the check
is ours.
"""

from __future__ import annotations

import json
import re
import uuid
import warnings
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import unquote

from pydantic import SecretStr

from shared.aws.clients import AwsClients
from shared.pipeline.jobs import Status
from tests.faultproxy import FaultProxy
from tests.helpers import CONSOLE_TOKEN, Env, console, replace_settings, started_job
from tools import iam

ACCOUNT, REGION = "123456789012", "us-east-1"
AUTH = {"Authorization": f"Bearer {CONSOLE_TOKEN}"}
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def call_resources(target: str, body: str) -> list[tuple[str, str]]:
    """(IAM action, resource ARN) of one recorded JSON-protocol call."""
    if target.startswith("S3 "):        # REST: "S3 <method> <path>" (tests/faultproxy.py)
        _, method, path = target.split(" ", 2)
        bucket, _, key = unquote(path.partition("?")[0]).lstrip("/").partition("/")
        if not key:
            return [("s3:ListBucket", f"arn:aws:s3:::{bucket}")]
        by_method = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject"}
        return [(by_method.get(method, f"s3:{method}"), f"arn:aws:s3:::{bucket}/{key}")]
    service, _, operation = target.partition(".")
    doc: dict[str, Any] = json.loads(body or "{}")
    if service == "AmazonSQS":
        action = iam.action_of("sqs", operation)
        name = doc.get("QueueName") or str(doc.get("QueueUrl", "")).rsplit("/", 1)[-1]
        return [(action, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")]
    if service.startswith("DynamoDB_"):
        action = iam.action_of("dynamodb", operation)
        tables = list(doc.get("RequestItems", {})) or [doc.get("TableName", "")]
        base = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"
        if doc.get("IndexName"):
            return [(action, f"{base}{t}/index/{doc['IndexName']}") for t in tables]
        return [(action, base + t) for t in tables]
    if service == "AWSStepFunctions":
        arn = doc.get("executionArn") or doc.get("stateMachineArn") or "*"
        return [(iam.action_of("sfn", operation), arn)]
    return [(f"{service}:{operation}", "*")]


def allowed(policy: dict[str, Any], action: str, resource: str) -> bool:
    for stmt in policy["Statement"]:
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        resources = stmt["Resource"] if isinstance(stmt["Resource"], list) \
            else [stmt["Resource"]]
        if stmt["Effect"] == "Allow" and action in actions \
                and any(fnmatchcase(resource, r) for r in resources):
            return True
    return False


def test_the_matcher_scopes_by_resource() -> None:
    policy = iam.policy("sweeper", "p", region=REGION, account=ACCOUNT)
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"
    assert allowed(policy, "dynamodb:Query", table + "p-remittances/index/retry-index")
    assert not allowed(policy, "dynamodb:Query", table + "q-remittances")
    assert not allowed(policy, "dynamodb:DeleteTable", table + "p-remittances")


async def test_operator_paths_are_granted(env: Env) -> None:
    request_id = f"REQ-GRANT-{uuid.uuid4().hex[:8]}"
    await started_job(env, request_id)                        # a real execution to show
    rejected = env.store()
    job = await rejected.create(f"{request_id}-R", "{}", "h")
    assert job is not None
    job = await rejected.transition(job, Status.RUNNING, sort_value=0,
                                    set_={"attempt": 1, "execution_name": "x"})
    await rejected.transition(job, Status.REJECTED, set_={"last_error": "unknown payee"})
    dlq = env.names.dlq(env.names.remittance_events)
    for n in range(2):
        await env.clients.sqs.send_message(QueueUrl=await env.queue_url(dlq),
                                           MessageBody=json.dumps({"request_id": f"DL-{n}"}))
    async with FaultProxy(env.endpoint) as proxy:
        settings = replace_settings(env.settings, **{
            "aws_endpoint_url": proxy.endpoint, "api_token": SecretStr(CONSOLE_TOKEN)})
        async with AwsClients(settings) as clients, \
                console(Env(settings, clients, env.endpoint)) as http:
            proxy.record_all()
            page = await http.get("/console/login")
            found = _CSRF.search(page.text)
            assert found
            signed = await http.post("/console/login", data={
                "csrf": found.group(1), "token": CONSOLE_TOKEN, "next": "/console"})
            assert signed.status_code in (200, 303)
            assert (await http.get("/console")).status_code == 200
            search = await http.get("/console/search", params={
                "q": "REQ-GRANT-", "mode": "prefix", "table": "remittances"})
            assert request_id in search.text
            timeline = await http.get(f"/console/requests/{request_id}")
            assert f"{request_id}-a1" in timeline.text and "history unavailable" not in \
                timeline.text
            listed = await http.get("/v1/jobs", params={"table": "remittances",
                                                        "state": "rejected"}, headers=AUTH)
            assert f"{request_id}-R" in listed.text
            peek = (await http.get(f"/v1/deadletters/{dlq}", headers=AUTH)).json()
            ids = [m["message_id"] for m in peek["messages"]]
            assert len(ids) == 2
            for action, message_id in zip(("replay", "delete"), ids, strict=True):
                done = await http.post(f"/v1/deadletters/{dlq}/{action}", headers=AUTH,
                                       json={"message_ids": [message_id]})
                assert done.status_code == 200 and done.json()["done"], done.text
    policy = iam.policy("sweeper", env.settings.prefix, region=REGION, account=ACCOUNT)
    assert proxy.calls, "the paths made AWS calls"
    denied = sorted({f"{action} on {arn}" for target, body in proxy.calls
                     for action, arn in call_resources(target, body)
                     if not allowed(policy, action, arn)})
    assert not denied, f"the sweeper's policy does not allow: {denied}"
    if proxy.unsigned:     # not AWS calls (tests/faultproxy.py): shown, not judged
        warnings.warn(f"unsigned requests reached the proxy: {proxy.unsigned}", stacklevel=1)
