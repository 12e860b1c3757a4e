"""Balancing shard leases: expiry judged on the observer's own clock, and the plan of
what one consumer takes or asks for (``docs/stream.md``, "The protocol")."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from shared.stream.leases import ShardLease


class ExpiryObserver:
    """Judges expiry by the observer's own clock: counter unchanged for ``failover_s``."""

    def __init__(self, failover_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failover_s = failover_s
        self.clock = clock
        self._seen: dict[str, tuple[str | None, int, float]] = {}

    def observe(self, leases: list[ShardLease]) -> None:
        now = self.clock()
        seen: dict[str, tuple[str | None, int, float]] = {}
        for lease in leases:
            prev = self._seen.get(lease.key)
            same = prev is not None and prev[:2] == (lease.owner, lease.counter)
            seen[lease.key] = (lease.owner, lease.counter, prev[2] if prev and same else now)
        self._seen = seen

    def expired(self, lease: ShardLease) -> bool:
        entry = self._seen.get(lease.key)
        return (lease.owner is not None and entry is not None
                and self.clock() - entry[2] >= self.failover_s)


@dataclass(frozen=True)
class Plan:
    target: int                     # fair share of active leases per live consumer
    take: list[ShardLease]          # unowned first, then expired
    steal: list[ShardLease]         # hand-off requests to send
    free: int                       # takeable leases seen (before taking)


def plan(leases: list[ShardLease], me: str, *, expired: Callable[[ShardLease], bool],
         ready: Callable[[ShardLease], bool], max_steal: int) -> Plan:
    """What this consumer should take or ask for, from one consistent look at the leases.

    Only *active* leases count: not finished and whose parents are finished. The
    fair share is ``ceil(active / live consumers)``; a steal is requested only from
    the most loaded live owner while it holds more than that share, so two
    consumers never trade a lease back and forth.
    """
    active = [lease for lease in leases if not lease.finished and ready(lease)]
    live = Counter(lease.owner for lease in active
                   if lease.owner and (lease.owner == me or not expired(lease)))
    target = math.ceil(len(active) / len(set(live) | {me})) if active else 0
    free = [lease for lease in active
            if lease.owner is None or (lease.owner != me and expired(lease))]
    free.sort(key=lambda lease: (lease.owner is not None, lease.shard_id))
    mine = live.get(me, 0)
    take = free[:max(0, target - mine)]
    deficit = target - mine - len(take)
    steal: list[ShardLease] = []
    others = sorted(((n, owner) for owner, n in live.items() if owner != me), reverse=True)
    if deficit > 0 and others and others[0][0] > target:
        n, victim = others[0]
        asked = [lease for lease in active if lease.owner == victim and lease.steal_by == me]
        wanted = min(deficit, max_steal, n - target) - len(asked)
        steal = [lease for lease in active
                 if lease.owner == victim and lease.steal_by is None][:max(0, wanted)]
    return Plan(target=target, take=take, steal=steal, free=len(free))

