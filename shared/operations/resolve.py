"""Operator decisions on jobs whose side effect has an unknown outcome.

Some side effects cannot be made idempotent (SES has no idempotency token): when a
send was handed over and no answer proves either way whether it happened, the job
goes ``FAILED`` with its in-doubt marker (the kind's ``in_doubt_field``) still set,
and nothing resends it automatically, not even a re-drive. A person who checked
(the recipient's inbox, the provider's logs) settles it here; the sweeper's API and
the CLI call this one function, and so can any future console.

Guarantees: the decision is a version-conditioned write (a concurrent change raises
:class:`~shared.pipeline.jobs.VersionConflict`, nothing is half-applied), and it
is recorded in the job's ``history`` with its time and the operator's note, and in
``resolution``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from shared.logs import get_logger
from shared.pipeline.jobs import Job, JobNotFound, JobStore, Status, VersionConflict, now_iso
from shared.pipeline.starter import WorkflowStarter

log = get_logger(__name__)
Outcome = Literal["sent", "not_sent"]
OUTCOMES: tuple[Outcome, ...] = ("sent", "not_sent")


class NotResolvable(Exception):
    """The job is not ``FAILED``, or its kind has no side effect to settle."""


@dataclass(frozen=True)
class Resolvable:
    """What :func:`resolve` needs to know about one job kind."""

    store: JobStore
    starter: WorkflowStarter
    in_doubt_field: str | None
    operator_output: Mapping[str, str] = field(default_factory=dict)


def in_doubt(job: Job, in_doubt_field: str | None) -> bool:
    """Whether ``job`` carries an unsettled side effect (only a person may settle it)."""
    return bool(in_doubt_field and job.raw.get(in_doubt_field))


async def resolve(kind: Resolvable, request_id: str, outcome: Outcome, note: str, *,
                  by: str = "operator") -> Job:
    """Settle a ``FAILED`` job: ``sent`` finishes it, ``not_sent`` sends it again.

    ``sent``: the job moves to its kind's success status with ``operator_output``
    (e.g. ``delivery_id = "operator"``); nothing is sent. ``not_sent``: the in-doubt
    marker is cleared and the job is re-driven as a fresh attempt, which performs
    the side effect once more.

    Raises:
        JobNotFound: no such job.
        NotResolvable: the job is not ``FAILED``, carries no in-doubt marker (nothing
            was handed over, or the outcome is known) or its kind has no in-doubt field.
        VersionConflict: the job changed meanwhile; read it again and decide again.
        ValueError: ``outcome`` is not ``sent`` or ``not_sent``.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}")
    if kind.in_doubt_field is None:
        raise NotResolvable(f"{kind.store.table} has no outcomes to settle")
    job = await kind.store.get(request_id)
    if job is None:
        raise JobNotFound(request_id)
    if job.status is not Status.FAILED:
        raise NotResolvable(f"{request_id} is {job.status.value}; only FAILED jobs are settled")
    if not in_doubt(job, kind.in_doubt_field):
        # Never attempted, or failed with a known outcome: "sent" would close a job whose
        # effect never happened. A re-drive is the way to try it again.
        raise NotResolvable(f"{request_id} has no delivery whose outcome is in doubt "
                            f"(no {kind.in_doubt_field}); re-drive it instead")
    text = " ".join(note.split())[:500]
    resolution = {"outcome": outcome, "note": text, "by": by, "at": now_iso()}
    entry = f"resolved by {by}: {outcome.replace('_', ' ')}" + (f" ({text})" if text else "")
    if outcome == "sent":
        done = await kind.store.transition(
            job, kind.store.success, history=entry,
            remove=(kind.in_doubt_field, "failure_reason"),
            set_={**kind.operator_output, "resolution": resolution})
        log.warning("operator.resolved", request_id=request_id, outcome=outcome, by=by)
        return done
    cleared = await kind.store.update(job, {"resolution": resolution},
                                      remove=(kind.in_doubt_field, "failure_reason"),
                                      history=entry)
    running = await kind.starter.begin(cleared, history=f"re-driven after {by}'s decision, "
                                       f"as attempt {cleared.attempt + 1}")
    if running is None:
        raise VersionConflict(request_id)
    log.warning("operator.resolved", request_id=request_id, outcome=outcome, by=by,
                execution=running.execution_name)
    return running
