"""Retry schedules as text: ``"5s,5m,30m,2h"`` ↔ delays between attempts.

The lowest layer of ``shared/``: settings validate ``REMITFLOW_RETRY_SCHEDULE_*`` with
it and the pattern (:mod:`shared.pipeline.starter`) builds its retry policies from
it, so it imports nothing of the project.
"""

from __future__ import annotations

import re

Schedule = tuple[float, ...]
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_schedule(text: str) -> Schedule:
    """``"5s,5m,30m,2h"`` → ``(5.0, 300.0, 1800.0, 7200.0)``: the delays between attempts.

    Units ``s``, ``m``, ``h``, ``d``; a bare number is seconds. An empty string is an
    empty schedule (one attempt, no retry).

    Raises:
        ValueError: an entry is not a non-negative duration.
    """
    out: list[float] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _DELAY.match(part)
        if match is None:
            raise ValueError(f"{part!r} is not a delay such as 30, 5s, 5m, 2h or 1d")
        out.append(float(match.group(1)) * _UNITS[match.group(2)])
    return tuple(out)


def format_schedule(schedule: Schedule) -> str:
    """The inverse of :func:`parse_schedule`, in the largest whole unit (``5m``, ``10h``)."""
    def one(delay: float) -> str:
        for unit in ("d", "h", "m"):
            if delay and delay % _UNITS[unit] == 0:
                return f"{int(delay // _UNITS[unit])}{unit}"
        return f"{delay:g}s"
    return ",".join(one(d) for d in schedule)
