"""The sweeper service, declared: re-drives, reconciles and resolves every job kind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from services.sweeper.settings import SweeperSettings
from shared.aws.names import Names
from shared.domain.directory import INVOICES, PAYEES
from shared.files.progress import FILE_RECORDS
from shared.grants import (
    ANY,
    CONSUME,
    JOB_TABLE,
    READ_INDEXED_JOBS,
    SHARD_LEASES,
    Grant,
    GrantScope,
    Res,
    table,
)
from shared.operations.sealing import SUBJECT_KEYS
from shared.pipeline.kind import JobKind
from shared.pipeline.lifecycle import TOMBSTONES
from shared.provision.resources import Resources, dead_letter_sources
from shared.service import Service

if TYPE_CHECKING:
    from shared.runtime import Builder


def build(kinds: Sequence[JobKind], resources: Resources) -> Builder:
    from services.sweeper.service import builder

    return builder(kinds, resources)


def grants(scope: GrantScope) -> list[Grant]:
    n, prefix = scope.names, scope.prefix
    names = [k.names(prefix) for k in scope.kinds]
    dlqs = dead_letter_sources(prefix, scope.kinds, scope.resources)
    archive = n.name("archive")     # REMITFLOW_ARCHIVE_BUCKET's default
    queues = [q for kn in names for base in (kn.intake_queue, kn.task_queue)
              for q in (base, Names.dlq(base))]
    return [
        Grant("JobTablesAndIndexes", JOB_TABLE,
              tuple(r for kn in names for r in table(kn.table))),
        Grant("ReadIndexedJobs", READ_INDEXED_JOBS,
              tuple(Res("table", kn.table) for kn in names)),
        # leadership, and the console's overview reads the shard leases (a Query)
        Grant("Leases", SHARD_LEASES, (Res("table", n.leases),)),
        # prefix search and the rejected list: bounded Scans (shared/operations/operate.py)
        Grant("SearchJobTables", ("dynamodb:Scan",),
              tuple(Res("table", kn.table) for kn in names)),
        # the timeline's execution history (shared/operations/timeline.py)
        Grant("ExecutionHistory", ("states:GetExecutionHistory",),
              tuple(Res("executions", kn.state_machine) for kn in names)),
        # the dead-letter API and console (shared/operations/deadletters.py): peek, replay,
        # delete on every DLQ bootstrap makes, derived as the sweeper derives it
        Grant("DeadLetters", CONSUME, tuple(Res("queue", Names.dlq(q)) for q in dlqs)),
        Grant("DeadLetterReplay", ("sqs:SendMessage", "sqs:GetQueueUrl"),
              tuple(Res("queue", q) for q in dlqs)),
        # the console's Files page (services/sweeper/console/files.py): list file
        # records, reopen a quarantined one and put its S3 event on the drop's queue
        Grant("FileRecords", ("dynamodb:Scan", "dynamodb:GetItem", "dynamodb:UpdateItem"),
              (Res("table", n.name(FILE_RECORDS.short)),)),
        Grant("RetryFiles", ("sqs:GetQueueUrl", "sqs:SendMessage"),
              tuple(Res("queue", d.queue_name(prefix)) for d in scope.drops)),
        Grant("RedriveWorkflows", ("states:StartExecution",),
              tuple(Res("state_machine", kn.state_machine) for kn in names)),
        Grant("ReconcileWorkflows", ("states:DescribeExecution",),
              tuple(Res("executions", kn.state_machine) for kn in names)),
        Grant("ResolveStateMachines", ("states:ListStateMachines",), ANY),
        Grant("QueueDepth", ("sqs:GetQueueUrl", "sqs:GetQueueAttributes"),
              tuple(Res("queue", q) for q in
                    (*queues, n.execution_status, Names.dlq(n.execution_status)))),
        # the hand-off check (shared/operations/handoff.py): subscribers' jobs by key,
        # a missing one's message published again
        Grant("HandoffLookups", ("dynamodb:BatchGetItem",),
              tuple(Res("table", k.names(prefix).table) for k in scope.kinds if k.subscribes)),
        Grant("HandoffRepublish", ("sns:Publish",),
              tuple(Res("topic", kn.topic) for kn in names if kn.topic)),
        # the archiver (shared/operations/archive.py): each job table's stream, the
        # tombstones, the archive bucket (write once, read, list partitions)
        Grant("ArchiveStreams", ("dynamodb:DescribeStream", "dynamodb:GetRecords",
                                 "dynamodb:GetShardIterator"),
              tuple(Res("stream", kn.table) for kn in names)),
        Grant("Tombstones", ("dynamodb:GetItem", "dynamodb:PutItem"),
              (Res("table", n.name(TOMBSTONES)),)),
        Grant("Archive", ("s3:GetObject", "s3:PutObject"), (Res("objects", archive),)),
        Grant("ListArchive", ("s3:ListBucket",), (Res("bucket", archive),)),
        # archive records sealed per payee, keys destroyed by erasure (sealing.py)
        Grant("SubjectKeys", ("dynamodb:GetItem", "dynamodb:PutItem"),
              (Res("table", n.name(SUBJECT_KEYS)),)),
        # erasing a payee (services/sweeper/erasure.py): their jobs found by a Scan and
        # scrubbed (JobTablesAndIndexes, SearchJobTables), the reference data, the
        # kinds' own tables (webhook endpoint health)
        Grant("EraseReferenceData", ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan"),
              (Res("table", n.name(PAYEES)), Res("table", n.name(INVOICES)))),
        Grant("EraseKindTables", ("dynamodb:Scan", "dynamodb:DeleteItem"),
              tuple(Res("table", n.name(spec.short)) for spec in scope.resources.tables
                    if spec.short not in (PAYEES, INVOICES, FILE_RECORDS.short))),
        # execution status events (shared/operations/status_events.py)
        Grant("ConsumeStatusEvents", CONSUME, (Res("queue", n.execution_status),)),
        Grant("DeadLetterStatusEvents", ("sqs:SendMessage",),
              (Res("queue", Names.dlq(n.execution_status)),)),
    ]


SERVICE = Service(name="sweeper", port=8083, build=build, grants=grants, console="/console",
                  settings=SweeperSettings)
