"""What the sweeper looks after (one :class:`SweepTarget` per job kind) and what a
sweep reports (:class:`SweepReport`, one :class:`TableReport` per table)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.operations.handoff import HandoffReport
from shared.pipeline.jobs import JobStore, now_iso
from shared.pipeline.starter import RetryPolicy, WorkflowStarter


@dataclass(frozen=True)
class SweepTarget:
    """One job table the sweeper looks after, with its state machine and retry policy."""

    short: str
    store: JobStore
    starter: WorkflowStarter
    output_fields: Mapping[str, str] = field(default_factory=dict)
    in_doubt_field: str | None = None
    operator_output: Mapping[str, str] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return self.store.table

    @property
    def policy(self) -> RetryPolicy:
        return self.starter.retry


@dataclass
class TableReport:
    """What one sweep read and did in one table.

    ``scanned_count``/``count`` are the index items the work queries read/returned
    (due retries and overdue running jobs); ``backlog_scanned_count`` is what the
    ``Select=COUNT`` backlog queries read. Nothing else is read.
    """

    table: str
    scanned_count: int = 0
    count: int = 0
    redriven: int = 0
    failed: int = 0
    conflicts: int = 0
    errors: int = 0
    deferred: int = 0
    reconciled: dict[str, int] = field(default_factory=dict)
    backlog: dict[str, int] = field(default_factory=dict)
    backlog_scanned_count: int = 0


@dataclass
class SweepReport:
    leader: bool
    swept: bool = False
    started_at: str = field(default_factory=now_iso)
    duration_s: float = 0.0
    aborted: str | None = None
    gauged: bool = False        # backlog counts and queue depths read by this sweep
    tables: dict[str, TableReport] = field(default_factory=dict)
    queues: dict[str, int] = field(default_factory=dict)
    handoff: dict[str, HandoffReport] = field(default_factory=dict)

    @property
    def items_read(self) -> int:
        return sum(t.scanned_count + t.backlog_scanned_count for t in self.tables.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "items_read": self.items_read}
