"""Stream consumer options, built once (from settings in production, by hand in tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.settings import Settings
from shared.stream.leases import TRIM_HORIZON


@dataclass(frozen=True)
class StreamOptions:
    """How a :class:`~shared.stream.consumer.StreamConsumer` reads, retries and fails over.

    Attributes:
        events: record kinds handed to the processor (others are checkpointed past).
        batch_size: records per processor call (GetRecords ``Limit``).
        batching_window_ms: how long to gather more records before calling it.
        max_attempts: processor failures of one record before ``on_poison``.
        checkpoint_interval_s: write a shard's processed position at most this often
            (0: after every batch). Shutdown, hand-off and shard end always write it;
            a crash replays what was processed since (the processor is idempotent).
        failover_s: a lease whose counter has not moved for this long is taken over.
        renew_s: lease renewal interval (default a third of ``failover_s``).
        sync_s: how often the shard list is compared with the lease table.
        poll_s / idle_max_s: wait after a read that was not a full batch; it stays
            ``poll_s`` for ``busy_window_s`` after the last read that returned records,
            then doubles up to ``idle_max_s``. One reader per shard reads at most
            ``1 / poll_s`` times a second (DynamoDB Streams allows 5 per shard).
        busy_window_s: how long after records the reader keeps polling every ``poll_s``.
        retry_base_s: first backoff after a failed read or write.
        max_steal: leases asked of busier consumers per balancing round.
        start_position: where a new shard lease starts (``TRIM_HORIZON`` or ``LATEST``).
        stall_after_s: a held shard not read successfully for this long makes the
            consumer unready (``/readyz``) while its lag gauge keeps growing.
    """

    events: frozenset[str] = field(default_factory=lambda: frozenset({"INSERT"}))
    batch_size: int = 100
    batching_window_ms: int = 0
    max_attempts: int = 3
    checkpoint_interval_s: float = 2.0
    failover_s: float = 10.0
    renew_s: float | None = None
    sync_s: float = 30.0
    poll_s: float = 0.25
    idle_max_s: float = 1.0
    busy_window_s: float = 10.0
    retry_base_s: float = 0.2
    max_steal: int = 2
    start_position: str = TRIM_HORIZON
    stall_after_s: float = 60.0

    @property
    def renew_every_s(self) -> float:
        return self.renew_s or self.failover_s / 3

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> StreamOptions:
        values: dict[str, object] = dict(
            batch_size=settings.stream.batch_size,
            batching_window_ms=settings.stream.batching_window_ms,
            max_attempts=settings.stream.max_attempts, failover_s=settings.stream.failover_s,
            checkpoint_interval_s=settings.stream.checkpoint_interval_s,
            sync_s=settings.stream.sync_interval_s, poll_s=settings.stream.poll_interval_s,
            idle_max_s=settings.stream.idle_max_s, busy_window_s=settings.stream.busy_window_s,
            start_position=settings.stream.start_position,
            stall_after_s=settings.stream.stall_after_s)
        return cls(**{**values, **overrides})  # type: ignore[arg-type]
