"""DynamoDB's atomic conditional writes in the embedded emulator.

On AWS a conditional write is atomic: of two ``UpdateItem`` calls conditioned on the
same counter, one succeeds and the other gets ``ConditionalCheckFailedException``.
moto's server handles requests on threads and its DynamoDB model takes no lock, so
two such calls can both read the old item, both pass their condition and both
write: two stream consumers then both "take" one shard lease, which AWS never allows
(``docs/emulator.md``, "Atomic conditional writes"). :func:`install` serialises
DynamoDB requests in this process, which is what the emulator's users rely on; moto
holds the GIL for almost all of a request anyway, so little concurrency is lost.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from shared.aws.emulator_patch import check_version, once, require

REQUESTS = threading.Lock()
"""Held while moto handles one DynamoDB request (and by the TTL expirer's deletions,
``shared/aws/emulator_ttl.py``): one change at a time, as the service behaves."""


@once
def install() -> None:
    """Serialise moto's DynamoDB request handling in this process (idempotent)."""
    from moto.dynamodb.responses import DynamoHandler

    original: Callable[[Any], Any] = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with REQUESTS:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


@once
def cache_update_expressions() -> None:
    """Parse each distinct ``UpdateExpression`` once (idempotent).

    moto parses an ``UpdateItem``'s expression twice per request (once to list its
    placeholders, once to apply it): a quarter of its ``UpdateItem`` time in a
    ``py-spy --gil`` profile (``docs/emulator.md``, "Parsed update expressions"). The
    text alone decides the tree, which moto never changes: its validator works on a
    deep copy. A speed cache, switched off with the others
    (``REMITFLOW_EMULATOR_SFN_CACHE=off``, moto as shipped); tied to the pinned moto.
    """
    from moto.dynamodb.parsing import expressions

    check_version()
    parser: Any = require(expressions, "UpdateExpressionParser")
    shipped: Callable[[str], Any] = require(parser, "make")
    parser.make = staticmethod(functools.lru_cache(maxsize=1024)(shipped))
