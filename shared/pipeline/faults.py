"""Deliberate, opt-in faults for the demo and tests (``REMITFLOW_FAULTS``).

``transient-once:REGEX`` fails the first attempt of matching request ids with a
transient error (so the retry path is visible); ``transient-always:REGEX`` fails
every attempt (so the ``FAILED`` path is visible). Unset in production.
"""

from __future__ import annotations

import re

from shared.pipeline.tasks import TransientError

_KINDS = ("transient-once", "transient-always")


class Faults:
    def __init__(self, spec: str | None) -> None:
        self.rules: list[tuple[str, re.Pattern[str]]] = []
        for part in filter(None, (p.strip() for p in (spec or "").split(","))):
            kind, _, pattern = part.partition(":")
            if kind not in _KINDS or not pattern:
                raise ValueError(f"REMITFLOW_FAULTS: {part!r} is not KIND:REGEX ({_KINDS})")
            self.rules.append((kind, re.compile(pattern)))

    def check(self, request_id: str, attempt: int) -> None:
        for kind, pattern in self.rules:
            if pattern.fullmatch(request_id) and (kind == "transient-always" or attempt <= 1):
                raise TransientError(f"injected fault ({kind}) for attempt {attempt}")
