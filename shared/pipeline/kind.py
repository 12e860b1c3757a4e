"""The job-kind descriptor: everything the pattern needs to know about one kind of job.

A service declares its kind once (``services/<service>/kind.py``); the pipeline,
bootstrap, the sweeper and the reconciler read it, so nothing in ``shared/``
names a service or guesses from a table name. Adding a job kind is a new folder
under ``services/`` with one :class:`JobKind` (see ``docs/architecture.md``,
"Adding a job kind").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable

from shared.aws.names import Names
from shared.pipeline.jobs import Status
from shared.settings import Settings


@dataclass(frozen=True)
class TableSpec:
    """A plain (non-job) table: short name and partition key (reference data, a
    service's own bookkeeping such as webhook endpoint health)."""

    short: str
    key: str
    ttl: str | None = None  # attribute DynamoDB expires items by (epoch seconds), if any


def _no_attributes(message: str) -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class HandOff:
    """What a publishing kind hands to its subscribers, so it can be handed again.

    The hand-off check (:mod:`shared.operations.handoff`) republishes a succeeded
    job whose subscribers hold no job for it after a grace period: the message is
    the job attribute ``field`` (what the task published), with the message
    attributes ``attributes(message)`` the task published it with.
    """

    field: str
    attributes: Callable[[str], Mapping[str, str]] = _no_attributes


@dataclass(frozen=True)
class KindNames:
    """The resolved AWS names of one job kind under one prefix."""

    table: str
    intake_queue: str
    task_queue: str
    state_machine: str
    topic: str | None
    subscribes: str | None


@dataclass(frozen=True)
class JobKind:
    """One kind of job: its table, queues, workflow and how its success looks.

    Attributes:
        name: the kind's name; also the state machine's and the task queue's stem
            (``<prefix>-<name>``, ``<prefix>-<name>-tasks``).
        table: short job table name (``<prefix>-<table>``), also the ``/v1`` path
            and the ``table`` the jobs API takes.
        intake_queue: short name of the queue the intake reads.
        definition: the workflow's ASL file (``${Name}`` placeholders filled by
            bootstrap: ``TasksQueueUrl``, ``JobTable``, ``TopicArn``, timeouts).
        success: the success status the workflow writes (``COMPLETED`` or ``SENT``).
        output_fields: task result key → job attribute, written on success (by the
            workflow and, when its write was lost, by the reconciler).
        publishes: short name of the SNS topic the kind publishes to, if any (its task
            handler publishes, before answering the task).
        handoff: how a published job's message is found again (with ``publishes``):
            its table gets the sparse ``handoff-index`` and the sweeper checks that
            every succeeded job reached the subscribing kinds.
        subscribes: short name of a topic the intake queue is subscribed to
            (raw delivery), if any.
        retry_schedule: default delays between attempts (``"5s,5m,30m"``, see
            :func:`~shared.schedule.parse_schedule`); ``None``: the default
            policy's (5 attempts, 30 s doubling; shared/pipeline/starter.py).
        schedule_by: job attribute whose value picks a schedule from
            ``schedules`` (the notification kind: ``channel``).
        schedules: value of ``schedule_by`` → default schedule.
        in_doubt_field: job attribute that marks a side effect whose outcome is
            unknown (an e-mail handed to SES with no answer); an operator settles
            such a job (:func:`~shared.operations.resolve.resolve`).
        operator_output: attributes written when an operator declares the side
            effect done (``{"delivery_id": "operator"}``).
        inline_payload: the task's view of a stored payload (what its handler needs
            and nothing more, ``None`` for "read the item"), which the starter puts
            into the execution input when it is small (up to
            ``REMITFLOW_INLINE_PAYLOAD_MAX_BYTES``); the ``Process`` state passes the
            input to the task (``"input.$": "$"``), so the task worker reads no item
            (:class:`~shared.pipeline.tasks.Task`). The execution history is one
            more place the data lives, hence a view: the enrichment kind leaves out
            partner extras outside ``REMITFLOW_ADVICE_EXTRA_FIELDS``. For a handler
            that needs only the payload; the notification kind needs its delivery
            intent from the item and keeps reading it.
    """

    name: str
    table: str
    intake_queue: str
    definition: Traversable
    success: Status = Status.COMPLETED
    output_fields: Mapping[str, str] = field(default_factory=dict)
    publishes: str | None = None
    handoff: HandOff | None = None
    subscribes: str | None = None
    retry_schedule: str | None = None
    schedule_by: str | None = None
    schedules: Mapping[str, str] = field(default_factory=dict)
    in_doubt_field: str | None = None
    operator_output: Mapping[str, str] = field(default_factory=dict)
    inline_payload: Callable[[str, Settings], str | None] | None = None

    def names(self, prefix: str) -> KindNames:
        n = Names(prefix)
        return KindNames(
            table=n.name(self.table), intake_queue=n.name(self.intake_queue),
            task_queue=n.name(f"{self.name}-tasks"), state_machine=n.name(self.name),
            topic=n.name(self.publishes) if self.publishes else None,
            subscribes=n.name(self.subscribes) if self.subscribes else None)
