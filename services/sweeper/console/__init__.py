"""The operator console, served by the sweeper under ``/console`` (``docs/console.md``).

Server-rendered pages (Jinja2, no JavaScript needed) over the same functions as
the sweeper's ``/v1`` API. Signing in takes ``REMITFLOW_API_TOKEN``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter

from services.sweeper.console.app import Console
from services.sweeper.console.deadletters import add_deadletter_pages
from services.sweeper.console.files import add_file_pages
from services.sweeper.console.pages import add_pages
from services.sweeper.console.session import Sessions, SessionStore
from shared.files.progress import FileProgress
from shared.operations.archive import ArchiveLookup
from shared.operations.deadletters import DeadLetters
from shared.operations.facade import Operations

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


def console_router(ops: Operations, letters: DeadLetters, *, token: str | None,
                   leases_table: str, dynamodb: DynamoDBClient | None = None,
                   files: FileProgress | None = None,
                   archive: ArchiveLookup | None = None) -> APIRouter:
    """The ``/console`` routes over these operations (``token=None``: auth disabled, said
    so); with ``files``, the Files page over those file records; with ``archive``, the
    timeline finds expired jobs too."""
    store = SessionStore(dynamodb, leases_table) if dynamodb is not None else None
    console = Console(ops, letters, Sessions(token, store=store), leases_table=leases_table,
                      archive=archive)
    add_pages(console)
    add_deadletter_pages(console)
    if files is not None:
        add_file_pages(console, files, letters.sqs)
    return console.router
