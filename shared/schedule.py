"""The one schedule type: the delays between attempts, as a value and as text.

Workflow retries (``"5s,5m,30m,2h"``, ``REMITFLOW_RETRY_SCHEDULE_*``), delivery
schedules, the intake's visibility back-off and quick retries are all a
:class:`Schedule`; :meth:`Schedule.exponential` produces the doubling ones. Waiting
on one is :func:`shared.retry.pause`, which a stop cuts short. The lowest layer of
``shared/``: it imports nothing of the project.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


@dataclass(frozen=True)
class Schedule:
    """Delays between attempts: ``delays[n - 1]`` follows failure ``n``; past the end
    the last delay repeats. ``jitter`` draws each delay from its top half."""

    delays: tuple[float, ...] = ()
    jitter: bool = False

    @classmethod
    def exponential(cls, base_s: float, cap_s: float, *, jitter: bool = True) -> Schedule:
        """``base_s`` doubling up to ``cap_s`` (then ``cap_s`` again and again)."""
        delays: list[float] = []
        delay = float(base_s)
        while delay < cap_s and delay > 0:
            delays.append(delay)
            delay *= 2
        delays.append(float(min(delay, cap_s)) if delay > 0 else 0.0)
        return cls(tuple(delays), jitter)

    @property
    def attempts(self) -> int:
        """Attempts the schedule allows when it does not repeat its last delay."""
        return len(self.delays) + 1

    def delay(self, attempt: int) -> float:
        """The wait after failure ``attempt`` (1-based)."""
        if not self.delays:
            return 0.0
        delay = self.delays[min(max(attempt, 1), len(self.delays)) - 1]
        if self.jitter and delay > 0:
            delay = delay / 2 + random.uniform(0, delay / 2)
        return delay

    def sized(self, attempts: int, fill: float = 0.0) -> Schedule:
        """Trimmed, or its last delay (else ``fill``) repeated, to give ``attempts``."""
        wanted = attempts - 1
        tail = self.delays[-1:] or (fill,)
        return Schedule((self.delays + tail * wanted)[:wanted], self.jitter)


def parse_schedule(text: str) -> Schedule:
    """``"5s,5m,30m,2h"`` → delays ``(5.0, 300.0, 1800.0, 7200.0)`` between attempts.

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
    return Schedule(tuple(out))


def format_schedule(schedule: Schedule) -> str:
    """The inverse of :func:`parse_schedule`, in the largest whole unit (``5m``, ``10h``)."""
    def one(delay: float) -> str:
        for unit in ("d", "h", "m"):
            if delay and delay % _UNITS[unit] == 0:
                return f"{int(delay // _UNITS[unit])}{unit}"
        return f"{delay:g}s"
    return ",".join(one(d) for d in schedule.delays)
