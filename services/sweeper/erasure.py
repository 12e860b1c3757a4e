"""Erasing a payee's personal data everywhere the project writes it.

``docs/architecture.md``, "Data lifecycle"; ``docs/runbook.md``, "erasure". One
function for ``POST /v1/payees/{payee_id}/erase`` and ``remitflow payees erase``:

1. **Live jobs**, every job table: the payee's jobs (a bounded Scan for the payee id
   in the stored JSON, then :func:`~shared.domain.erasure.subject_of` to be sure) get
   their personal fields replaced by ``[erased]`` (payload, advice, delivery, JSON
   text included): a version-conditioned write each, recorded in the job's history.
   Amounts, currencies, dates, ids and states are untouched.
2. **The archive**: the payee's data key is destroyed (``shared/operations/sealing.py``):
   every sealed record of theirs is unreadable from then on, in every object version;
   the clear parts (the money) stay.
3. **Reference data**: the payee item keeps its id and the erasure's date; invoices keep
   their amounts (their personal fields, if any, erased).
4. **The kinds' own tables** (the webhook endpoint health): items about the payee's
   webhook host are deleted.

The audit (who, when, the note, the report) is kept on the payee's key item, where a
new key can never be made again, and logged (``payee.erased``). Tombstones hold no
personal data. Running it twice finds nothing more and says so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.aws.dynamo import from_item, to_item
from shared.domain.erasure import ERASED, scrub_job, subject_of
from shared.logs import get_logger
from shared.operations.sealing import SubjectKeys
from shared.pipeline.jobs import Job, JobStore, VersionConflict, now_iso

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

log = get_logger(__name__)
SCAN_PAGE = 500
CONFLICT_RETRIES = 5


class UnknownPayee(KeyError):
    """No such payee in the reference data, and nothing erased before."""


@dataclass
class ErasureReport:
    payee_id: str
    by: str
    at: str
    note: str
    jobs: dict[str, list[str]] = field(default_factory=dict)
    reference: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    archive: str = ""
    kept: str = "amounts, currencies, dates, ids and states"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ErasureScope:
    """Where a payee's data lives: job stores by short name, the reference tables, the
    kinds' own tables and the data keys."""

    dynamodb: DynamoDBClient
    stores: Mapping[str, JobStore]
    payees: str
    invoices: str
    kind_tables: Sequence[tuple[str, str]]     # (table, its key attribute)
    keys: SubjectKeys


async def _scan(ddb: DynamoDBClient, table: str, needle: str,
                attributes: Sequence[str]) -> list[dict[str, Any]]:
    """Items of ``table`` whose ``attributes`` contain ``needle`` (all pages)."""
    names = {f"#a{i}": a for i, a in enumerate(attributes)}
    expression = " OR ".join(f"contains({n}, :v)" for n in names)
    kwargs: dict[str, Any] = {"TableName": table, "FilterExpression": expression,
                              "ExpressionAttributeNames": names,
                              "ExpressionAttributeValues": {":v": {"S": needle}},
                              "Limit": SCAN_PAGE}
    out: list[dict[str, Any]] = []
    while True:
        resp = await ddb.scan(**kwargs)
        out += [from_item(i) for i in resp.get("Items", [])]
        if "LastEvaluatedKey" not in resp:
            return out
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


async def _erase_job(store: JobStore, job: Job, history: str) -> bool:
    """Scrub one job (version-conditioned; a lost race re-reads). False: nothing to do."""
    for _ in range(CONFLICT_RETRIES):
        cleaned = scrub_job(job.raw)
        changed = {k: v for k, v in cleaned.items() if v != job.raw.get(k)}
        if not changed:
            return False
        try:
            await store.update(job, changed, history=history)
            return True
        except VersionConflict:
            fresh = await store.get(job.request_id)
            if fresh is None:
                return False          # expired meanwhile: the archive step covers it
            job = fresh
    raise VersionConflict(job.request_id)


async def erase_payee(scope: ErasureScope, payee_id: str, *, by: str,
                      note: str) -> ErasureReport:
    """Erase ``payee_id``'s personal data (module docstring); returns what was erased where."""
    ddb = scope.dynamodb
    note = " ".join(note.split())[:500]
    report = ErasureReport(payee_id, by, now_iso(), note)
    item = (await ddb.get_item(TableName=scope.payees, ConsistentRead=True,
                               Key={"payee_id": {"S": payee_id}})).get("Item")
    payee = from_item(item) if item else None
    if payee is None and await scope.keys.erasure(payee_id) is None:
        raise UnknownPayee(payee_id)
    history = f"personal data erased by {by}" + (f" ({note})" if note else "")
    for short, store in scope.stores.items():
        erased = []
        for raw in await _scan(ddb, store.table, payee_id, ("payload", "advice", "payee_id")):
            job = Job.from_raw(raw)
            if subject_of(raw) == payee_id and await _erase_job(store, job, history):
                erased.append(job.request_id)
        report.jobs[short] = sorted(erased)
    if payee is not None and not payee.get("erased_at"):
        kept: dict[str, Any] = {k: payee[k] for k in ("payee_id", "payee_type", "country")
                                if k in payee}
        await ddb.put_item(TableName=scope.payees, Item=to_item(
            {**kept, "erased_at": report.at, "name": ERASED}))
        report.reference.append(f"{scope.payees}/{payee_id}")
    for raw in await _scan(ddb, scope.invoices, payee_id, ("payee_id",)):
        cleaned = scrub_job(raw)
        if cleaned != raw:
            await ddb.put_item(TableName=scope.invoices, Item=to_item(cleaned))
            report.reference.append(f"{scope.invoices}/{raw.get('invoice_id')}")
    host = urlsplit(str((payee or {}).get("webhook_url") or "")).hostname
    for table, key in scope.kind_tables if host else ():
        for raw in await _scan(ddb, table, str(host), ("origin",)):
            await ddb.delete_item(TableName=table, Key=to_item({key: raw[key]}))
            report.other.append(f"{table}/{raw[key]}")
    existed = await scope.keys.erase(payee_id, {
        "erased_at": report.at, "erased_by": by, "note": note,
        "erased_epoch": int(time.time()),
        "report": {k: v for k, v in report.as_dict().items() if k in ("jobs", "reference",
                                                                       "other")}})
    report.archive = ("data key destroyed: archived records sealed for this payee are "
                      "unreadable" if existed else "no archived records were sealed for "
                      "this payee (no data key)")
    log.warning("payee.erased", payee_id=payee_id, by=by, note=note,
                jobs={k: len(v) for k, v in report.jobs.items()},
                reference=len(report.reference), other=len(report.other), key=existed)
    return report
