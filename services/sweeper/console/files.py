"""The console's Files page: every dropped file with its status, counts, reasons
and reports (its record, ``shared/files/progress.py``), and a retry for a
quarantined file once its cause is fixed (docs/bankfiles.md, "An answer for
every file").

A retry reopens the record (only a quarantined one: a second click finds it
reading or done and does nothing) and puts an ``ObjectCreated`` event for the same
file version on the drop's queue, so the file goes through the intake again with
its usual idempotency: transactions already stored are duplicates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import Response

from services.sweeper.console.app import Console, first
from shared.files.drop import created_event
from shared.files.outcome import describe, headline
from shared.files.progress import FileProgress

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

LIST_LIMIT = 200


def add_file_pages(console: Console, records: FileProgress, sqs: SQSClient) -> None:
    router = console.router

    @router.get("/files")
    async def files(request: Request) -> Response:
        session = await console.gate(request)
        if isinstance(session, Response):
            return session
        rows = [(key, p, headline(p)) for key, p in await records.recent(LIST_LIMIT)]
        return console.render(request, session, "files.html", rows=rows, limit=LIST_LIMIT)

    @router.get("/files/file")
    async def file_page(request: Request, id: str = "") -> Response:
        session = await console.gate(request)
        if isinstance(session, Response):
            return session
        found = await records.get_by_key(id) if id.startswith("file:") else None
        return console.render(request, session, "file.html", id=id, record=found,
                              lines=describe(found) if found else [],
                              status=200 if found else 404)

    @router.post("/files/retry")
    async def retry(request: Request) -> Response:
        gate = await console.post_gate(request)
        if isinstance(gate, Response):
            return gate
        session, form = gate
        record_key = first(form, "id")
        found = await records.get_by_key(record_key) if record_key.startswith("file:") else None
        ref = found.ref if found else None
        queue = found.summary.info.get("queue") if found else None
        if found is None or ref is None or not queue:
            return console.render(request, session, "error.html", status=404,
                                  title="Unknown file", message="No such file record.")
        reopened = await records.reopen(ref, found.summary)
        if reopened:
            url = (await sqs.get_queue_url(QueueName=queue))["QueueUrl"]
            await sqs.send_message(QueueUrl=url, MessageBody=created_event(ref))
        return console.render(request, session, "file_retry.html", id=record_key, ref=ref,
                              queue=queue, reopened=reopened, was=found.state)
