"""Deliberate, opt-in faults for the demo and the tests: one mechanism, from settings.

Both kinds are off unless set, and unset in production:

* **Transient faults** (``REMITFLOW_FAULTS``): ``transient-once:REGEX`` fails the
  first attempt of matching request ids with a transient error (so the retry path is
  visible); ``transient-always:REGEX`` fails every attempt (so the ``FAILED`` path
  is visible). :func:`shared.pipeline.assemble.pipeline` applies them to every
  kind's task handler (:class:`Faults`).
* **Crash points** (``REMITFLOW_FAULT_POINT=<name>``, ``REMITFLOW_FAULT_AFTER=<n>``):
  the process exits at :func:`fault_point` ``<name>`` with ``os._exit(137)``, which
  skips every cleanup like ``kill -9``; the crash-safety tests prove that nothing is
  lost there. A point that passes ``reached`` (a count, e.g. records handled so far)
  fires only once that count is at least ``REMITFLOW_FAULT_AFTER``, and never without
  it, so a test can crash mid-way and restart the process without it. The service
  process arms them at start from its settings (:func:`arm`, ``shared/runtime.py``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from shared.pipeline.errors import TransientError

_KINDS = ("transient-once", "transient-always")


class Faults:
    """The transient faults ``REMITFLOW_FAULTS`` asks for."""

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


@dataclass(frozen=True)
class CrashPoint:
    """Where this process dies (``REMITFLOW_FAULT_POINT``) and after how many
    (``REMITFLOW_FAULT_AFTER``) for a point that counts."""

    name: str
    after: int | None = None


_armed: CrashPoint | None = None


def arm(point: str | None, after: int | None = None) -> None:
    """Arm this process's crash point (none when ``point`` is unset)."""
    global _armed
    _armed = CrashPoint(point, after) if point else None


def fault_point(name: str, reached: int | None = None) -> None:
    """Exit here, like ``kill -9``, if this is the armed crash point (see above)."""
    point = _armed
    if point is None or point.name != name:
        return
    if reached is None or (point.after is not None and reached >= point.after):
        os._exit(137)
