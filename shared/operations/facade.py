"""What an operator can do, in one object: the jobs API and the console talk to this.

:class:`Operations` holds the sweep targets (one per job kind) and offers the
operator actions on their jobs — re-drive one, resolve an unknown outcome — and a
sweep now. The HTTP API (``services/sweeper/api.py``) and the console
(``services/sweeper/console/``) never hold the :class:`~shared.operations.sweep.Sweeper`
worker: a sweep on request is the one thing they ask of it, through ``sweep_now``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from shared.operations.redrive import redrive_failed
from shared.operations.resolve import Outcome, Resolvable, resolve
from shared.operations.sweep import Sweeper
from shared.operations.targets import SweepReport, SweepTarget
from shared.pipeline.jobs import Job


@dataclass(frozen=True)
class Operations:
    """The operator's desk over every job table.

    Attributes:
        targets: short table name → its sweep target (store, starter, kind's options).
        sweep_now: one sweep at once, with its report (``POST /v1/sweep``).
        interval_s: the sweeper's interval (the console's overview shows it).
    """

    targets: Mapping[str, SweepTarget]
    sweep_now: Callable[[], Awaitable[SweepReport]]
    interval_s: float

    @classmethod
    def of(cls, sweeper: Sweeper) -> Operations:
        """The desk over a sweeper's targets; a sweep now is its forced sweep."""
        async def sweep_now() -> SweepReport:
            return await sweeper.sweep_once(force=True)

        return cls(sweeper.targets, sweep_now, sweeper.interval_s)

    @property
    def tables(self) -> list[str]:
        return sorted(self.targets)

    def target(self, short: str) -> SweepTarget:
        try:
            return self.targets[short]
        except KeyError:
            raise LookupError(f"unknown table {short!r}: one of {self.tables}") from None

    async def redrive(self, short: str, request_id: str, *,
                      history: str = "redrive by api") -> Job:
        """Re-drive a ``FAILED`` or ``REJECTED`` job by hand
        (:func:`~shared.operations.redrive.redrive_failed`)."""
        return await redrive_failed(self.target(short), request_id, history=history)

    async def resolve(self, short: str, request_id: str, outcome: Outcome, note: str, *,
                      by: str = "operator") -> Job:
        """An operator's decision on a ``FAILED`` job (``shared/operations/resolve.py``)."""
        target = self.target(short)
        return await resolve(Resolvable(target.store, target.starter, target.in_doubt_field,
                                        target.operator_output), request_id, outcome, note,
                             by=by)
