"""How a task handler says what went wrong: a business error no retry can fix, or a
transient one worth retrying (``shared/pipeline/tasks.py`` answers the workflow
accordingly)."""

from __future__ import annotations


class BusinessError(Exception):
    """No retry can fix this (unknown payee, amounts that do not add up, HTTP 4xx)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    @property
    def error_name(self) -> str:
        return f"remitflow.Business.{self.reason}"


class TransientError(Exception):
    """Worth retrying later (throttling, a receiver that is down, a 503)."""
