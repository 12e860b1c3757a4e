"""Prometheus metrics for every part of the pattern (names per Prometheus conventions).

Labels are bounded (queue, table, outcome, error name, AWS operation); never a
request id. One process serves one service, so the scrape job tells services apart.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_AGE = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 14400)

INTAKE_MESSAGES = Counter(
    "remitflow_intake_messages_total", "Partner/event messages taken from an intake queue.",
    ["queue", "outcome"])
DLQ_MESSAGES = Counter(
    "remitflow_dlq_messages_total", "Messages moved to a dead-letter queue, by reason.",
    ["queue", "reason"])
MESSAGE_AGE = Histogram(
    "remitflow_message_age_seconds", "Age of an SQS message when received.", ["queue"],
    buckets=_AGE)
WORKFLOW_STARTS = Counter(
    "remitflow_workflow_starts_total", "Workflow starts by the stream starter.",
    ["table", "outcome"])
TASKS = Counter(
    "remitflow_tasks_total", "Callback tasks answered, by outcome and error name.",
    ["queue", "outcome", "error"])
HANDLER_DURATION = Histogram(
    "remitflow_handler_duration_seconds", "Time spent in a task handler.", ["queue"],
    buckets=_LATENCY)
STREAM_ITERATOR_AGE = Gauge(
    "remitflow_stream_iterator_age_seconds",
    "Age of the newest record read from a stream shard (stream lag).", ["table", "shard"])
STREAM_RECORDS = Counter(
    "remitflow_stream_records_total", "Stream records read, by event name.", ["table", "event"])
AWS_REQUESTS = Counter(
    "remitflow_aws_requests_total", "AWS API calls made by this process.",
    ["service", "operation"])
AWS_EMPTY_READS = Counter(
    "remitflow_aws_empty_reads_total", "Polls that came back empty: ReceiveMessage without "
    "messages, GetRecords without records (billed, but proportional to time, not traffic).",
    ["service", "operation"])
DELIVERIES = Counter(
    "remitflow_deliveries_total", "Payee notifications, by channel and outcome.",
    ["channel", "outcome"])
JOBS = Gauge("remitflow_jobs", "Jobs by table and sweeper state.", ["table", "state"])
SWEEPER_REDRIVES = Counter(
    "remitflow_sweeper_redrives_total", "Jobs re-driven by the sweeper.", ["table"])
SWEEPER_FAILED = Counter(
    "remitflow_sweeper_failed_total", "Jobs moved to FAILED past the retry threshold.", ["table"])
SWEEPER_RECONCILED = Counter(
    "remitflow_sweeper_reconciled_total", "Running jobs reconciled against their execution.",
    ["table", "outcome"])
HANDOFF_CHECKED = Counter(
    "remitflow_handoff_checked_total",
    "Succeeded published jobs whose hand-off to the subscribing tables was checked.",
    ["table"])
HANDOFF_REPAIRS = Counter(
    "remitflow_handoff_repairs_total",
    "Succeeded jobs missing from a subscribing table: republished, or given up on "
    "after the last repair.", ["table", "outcome"])
HANDOFF_CHECKED_UNTIL = Gauge(
    "remitflow_handoff_checked_until_timestamp_seconds",
    "Every job of the table that succeeded before this Unix time has been checked.",
    ["table"])
SWEEP_DURATION = Histogram(
    "remitflow_sweep_duration_seconds", "Duration of one sweep.", buckets=_LATENCY)
SWEEPER_ITEMS_READ = Counter(
    "remitflow_sweeper_items_read_total", "Index items read by the sweeper.", ["table"])
SWEEPER_LEADER = Gauge("remitflow_sweeper_leader", "1 while this sweeper holds the lease.")
SWEEPER_LAST_SUCCESS = Gauge(
    "remitflow_sweeper_last_success_timestamp_seconds", "Unix time of the last complete sweep.")
QUEUE_MESSAGES = Gauge(
    "remitflow_queue_messages", "Approximate visible messages per queue.", ["queue"])
WORKER_ERRORS = Counter(
    "remitflow_worker_errors_total", "Unexpected errors in a worker loop (retried).", ["worker"])
STREAM_LEASES_HELD = Gauge(
    "remitflow_stream_leases_held", "Stream shard leases held by this consumer.", ["table"])
STREAM_SHARDS = Gauge(
    "remitflow_stream_shards",
    "Stream shards by lease state (owned, unowned, expired, waiting_parent, finished).",
    ["table", "state"])
STREAM_CHECKPOINT_CONFLICTS = Counter(
    "remitflow_stream_checkpoint_conflicts_total",
    "Lease writes refused because the lease moved on (fenced checkpoints, lost renewals).",
    ["table"])
STREAM_LEASE_TAKES = Counter(
    "remitflow_stream_lease_takes_total",
    "Shard leases taken, by kind (unowned, expired, steal).", ["table", "kind"])
STREAM_TRIMMED = Counter(
    "remitflow_stream_trimmed_total",
    "Reads that hit trimmed stream data (continued from TRIM_HORIZON).", ["table"])
STREAM_THROTTLED = Counter(
    "remitflow_stream_throttled_total", "Stream reads throttled (backed off).", ["table"])
STREAM_LEASE_WRITES = Counter(
    "remitflow_stream_lease_writes_total",
    "Shard lease writes (UpdateItem) by kind: checkpoint (coalesced, renewal folded in), "
    "renew, take, release, handoff, finish.", ["table", "kind"])

# --- execution status events (EventBridge → SQS → sweeper) --------------------------------
EXECUTION_EVENTS = Counter(
    "remitflow_execution_events_total",
    "Step Functions execution status events consumed, by table, execution status and outcome "
    "(applied, stale, unknown, invalid).", ["table", "status", "outcome"])
LEASE_AMBIGUOUS_WRITES = Counter(
    "remitflow_stream_lease_writes_recognised_total",
    "Shard lease writes whose response was lost (timeout, 5xx) and whose retry failed its "
    "condition, recognised by their write token as our own committed write.", ["table"])
# File intake (S3 ObjectCreated -> SQS -> one job per record; docs/bankfiles.md).
FILES = Counter(
    "remitflow_files_total", "Dropped files handled, by outcome (processed, duplicate, "
    "quarantined, gone, superseded).", ["queue", "outcome"])
FILE_RECORDS = Counter(
    "remitflow_file_records_total", "Records (transactions) read from dropped files, by outcome "
    "(stored, duplicate, quarantined, rejected, not_final).", ["queue", "outcome"])
FILE_STATUS_REPORTS = Counter(
    "remitflow_file_status_reports_total", "Group or batch statuses a dropped file gave without "
    "listing transactions (a rejected batch nobody else hears of), by level and bank status.",
    ["queue", "level", "status"])
FILE_DURATION = Histogram(
    "remitflow_file_duration_seconds", "Time to handle one dropped file, download to last "
    "record.", ["queue"], buckets=(*_LATENCY, 300, 600, 1800))
JOB_WRITES_RECOGNISED = Counter(
    "remitflow_job_writes_recognised_total",
    "Job version writes whose answer was lost (timeout, 5xx) and whose retry failed its "
    "condition, recognised by their write token as our own committed write.", ["table"])

# --- back-pressure (shared/pipeline/admission.py) ------------------------------------------
ADMISSION_WAITS = Counter(
    "remitflow_admission_waits_total",
    "Workflow starts that waited for room in the task queue (back-pressure).", ["queue"])
ADMISSION_DEFERRED = Counter(
    "remitflow_admission_deferred_total",
    "Sweeper starts left for the next sweep because the task queue was full.", ["table"])
ADMISSION_READS = Counter(
    "remitflow_admission_depth_reads_total",
    "Task queue depth reads by the back-pressure gate (GetQueueAttributes).", ["queue"])
ARCHIVED = Counter(
    "remitflow_archived_total",
    "Stream records the archiver handled: expired jobs archived (written, or already in the "
    "archive after a replay), tombstones written, deletions that were not expiries.",
    ["table", "outcome"])
