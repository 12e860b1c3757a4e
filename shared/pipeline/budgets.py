"""Size budgets: one per stage a job's data passes through, all in this file.

A message intake accepts must fit everywhere downstream, or it would fail there,
after being accepted, and end ``FAILED`` for a reason no retry fixes. So intake
measures what each stage will carry — serialized, and escaped where the stage
embeds it as a JSON string — and refuses with reason ``too_large`` naming the
stage and its limit.

AWS limits (bytes): a DynamoDB item 400 KB (attribute names and UTF-8 values); a
Step Functions task output (``SendTaskSuccess``), execution input and state 256 KB;
an SNS or SQS message 256 KB (body and attributes). Each budget keeps a reserve
for what the pipeline adds (status, version, ids, message attributes).

Escaping: the task worker answers ``json.dumps(output)`` (ASCII-escaped), so a
quote or backslash in a value that is already JSON text costs 2 bytes, and again
2 per level; a non-ASCII character becomes ``\\uXXXX`` (6 bytes); a control
character 6 too. :func:`escaped_size` measures exactly that.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

KB = 1024


@dataclass(frozen=True)
class Budget:
    """An AWS limit for one stage, less the reserve the pipeline needs there."""

    stage: str
    limit: int
    reserve: int

    @property
    def usable(self) -> int:
        return self.limit - self.reserve

    def problem(self, size: int) -> str | None:
        """Why ``size`` does not fit, naming the stage and the limit, or None."""
        if size <= self.usable:
            return None
        return (f"{self.stage}: {size} bytes over its budget of {self.usable} bytes "
                f"(AWS limit {self.limit} bytes, {self.reserve} reserved)")


JOB_ITEM = Budget("job item (DynamoDB item)", 400 * KB, 8 * KB)
TASK_OUTPUT = Budget("task output (Step Functions SendTaskSuccess)", 256 * KB, 4 * KB)
WORKFLOW_STATE = Budget("workflow state (Step Functions input/state)", 256 * KB, 4 * KB)
TOPIC_MESSAGE = Budget("published message (SNS/SQS)", 256 * KB, 4 * KB)
BUDGETS = (JOB_ITEM, TASK_OUTPUT, WORKFLOW_STATE, TOPIC_MESSAGE)
INLINE_PAYLOAD_CEILING = 32 * KB
"""The largest payload a starter may put into the execution input
(``REMITFLOW_INLINE_PAYLOAD_MAX_BYTES`` is at most this): the workflow state then
carries it beside the task result, so :func:`inline_size` counts it there."""


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


def escaped_size(text: str) -> int:
    """Bytes of ``text`` as a JSON string inside ``json.dumps`` (ASCII-escaped) output."""
    return len(json.dumps(text))


def inline_size(payload: str, limit: int = INLINE_PAYLOAD_CEILING) -> int:
    """Bytes ``payload`` adds to the execution input (and so to the workflow state)
    when a starter inlines it: its escaped size if within ``limit``, else 0."""
    size = escaped_size(payload)
    return size if size <= limit else 0


def first_problem(sizes: Mapping[Budget, int]) -> str | None:
    """The first stage whose budget ``sizes`` exceed, described; None when all fit."""
    for budget in BUDGETS:
        if budget in sizes:
            problem = budget.problem(sizes[budget])
            if problem:
                return problem
    return None
