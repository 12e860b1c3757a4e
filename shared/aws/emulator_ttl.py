"""DynamoDB TTL in the embedded emulator: expired items are deleted, as AWS deletes them.

moto stores a table's TTL setting (``UpdateTimeToLive``) but never deletes an
expired item. This adds the expirer LocalStack added: every ``interval_s``
(``REMITFLOW_EMULATOR_TTL_INTERVAL_S``, 0 for never) and on
``DELETE /_aws/dynamodb/expired`` (LocalStack's path; ``?table=NAME`` limits it to one
table, ``?now=EPOCH`` expires as if it were that time, for tests), each table with
TTL enabled loses the items whose TTL attribute is a number of epoch seconds at or
before now. Each deletion reaches the table's stream as a ``REMOVE`` record made by
the service, as on AWS:
``"userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"}``
(moto's records carry no ``userIdentity``: it is added to the record here; see
``docs/emulator.md``). moto's models are used through their own methods.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

EXPIRED_PATH = "/_aws/dynamodb/expired"
# As the GetRecords API's model names the members (botocore parses by these names; the
# Lambda event form of the same record spells them "type" and "principalId").
TTL_IDENTITY = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}

log = logging.getLogger(__name__)
_lock = threading.Lock()


def _tables() -> Iterable[Any]:
    from moto.dynamodb.models import dynamodb_backends

    for account in list(dynamodb_backends.keys()):
        for region in list(dynamodb_backends[account].keys()):
            yield from list(dynamodb_backends[account][region].tables.values())


def _expired(item: Any, attribute: str, now: float) -> bool:
    value = item.attrs.get(attribute)
    if value is None or value.type != "N":
        return False            # AWS ignores a TTL attribute that is not a number
    try:
        return float(value.value) <= now
    except ValueError:
        return False


def _mark_service_removal(table: Any, item: Any) -> None:
    """Give the stream record of ``item``'s deletion TTL's ``userIdentity``."""
    shard = table.stream_shard
    if shard is None:
        return
    keys = {table.hash_key_attr: item.hash_key.to_json()}
    for record in reversed(shard.items):
        data = record.record
        if data.get("eventName") == "REMOVE" and data["dynamodb"].get("Keys") == keys \
                and "userIdentity" not in data:
            data["userIdentity"] = dict(TTL_IDENTITY)
            return


def expire(now: float | None = None, table_name: str | None = None) -> int:
    """Delete every expired item (of ``table_name`` only, if given); returns how many."""
    from shared.aws.emulator_dynamodb import REQUESTS

    now = time.time() if now is None else now
    count = 0
    with _lock, REQUESTS:         # no DynamoDB request runs meanwhile (emulator_dynamodb)
        for table in _tables():
            ttl = getattr(table, "ttl", {}) or {}
            attribute = ttl.get("AttributeName")
            if ttl.get("TimeToLiveStatus") != "ENABLED" or not attribute:
                continue
            if table_name is not None and table.name != table_name:
                continue
            if table.range_key_attr is not None:
                continue        # our tables have no sort key; not needed here
            for key, item in list(table.items.items()):
                if not _expired(item, attribute, now):
                    continue
                current = table.items.get(key)      # AWS deletes only a still-expired item
                if current is None or not _expired(current, attribute, now):
                    continue
                removed = table.delete_item(key, None)
                if removed is not None:
                    _mark_service_removal(table, removed)
                    count += 1
    return count


def routes(app: Callable[..., Any]) -> Callable[..., Any]:
    """WSGI middleware: ``DELETE /_aws/dynamodb/expired`` runs the expirer now."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != EXPIRED_PATH or environ.get("REQUEST_METHOD") \
                not in ("DELETE", "POST"):
            return app(environ, start_response)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        now = float(query["now"][0]) if "now" in query else None
        table = query["table"][0] if "table" in query else None
        body = json.dumps({"ExpiredItems": expire(now, table)}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return wsgi


def start_expirer(interval_s: float) -> None:
    """Run :func:`expire` every ``interval_s`` on a daemon thread (0: never)."""
    if interval_s <= 0:
        return

    def run() -> None:
        while True:
            time.sleep(interval_s)
            try:
                expired = expire()
                if expired:
                    log.info("emulator TTL: %d expired items deleted", expired)
            except Exception as exc:     # a table changing under us: next round
                log.warning("emulator TTL round failed: %r", exc)

    threading.Thread(target=run, name="emulator-ttl", daemon=True).start()


def trigger(endpoint: str, table: str | None = None, now: float | None = None) -> int:
    """Ask the emulator at ``endpoint`` to expire now (tests, the soak); returns how many."""
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode({k: v for k, v in (("table", table), ("now", now))
                                    if v is not None})
    request = urllib.request.Request(f"{endpoint}{EXPIRED_PATH}?{query}", method="DELETE")
    with urllib.request.urlopen(request, timeout=30) as resp:
        return int(json.load(resp)["ExpiredItems"])
