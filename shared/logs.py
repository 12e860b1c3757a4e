"""Structured logs: JSON events bound to ``request_id``, with secrets and PII redacted.

Redaction runs on every event — ours (structlog), every standard-library logger
(uvicorn, botocore, asyncio: routed through the same processors), their
tracebacks, and an uncaught exception's traceback (``sys.excepthook``). What never
reaches a log line: webhook secrets, bearer tokens and AWS request signatures;
IBANs in either case (kept: country and last 4), card numbers (Luhn-valid, any
separator, glued to words or not: ``shared/pii.py``), card-like runs with spaces or
dashes and digit runs of 8 or more (account numbers; kept: last 4); e-mail local
parts (kept: the domain). Values under secret-looking keys are dropped whole.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any

import structlog

from shared.pii import mask_ibans, mask_pans
from shared.tracing import log_processor as trace_ids

_SECRET_KEYS = re.compile(r"(secret|token|password|authorization|api_key)", re.I)
_WHSEC = re.compile(r"whsec_[A-Za-z0-9+/=]+")
_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")
# Header values as botocore/httpx print them: 'Authorization': b'AWS4-HMAC-SHA256 ...'.
_AUTH_HEADER = re.compile(r"((?i:authorization|x-amz-security-token)['\"]?\s*[:=]\s*b?['\"]?)"
                          r"[^'\"\n]+")
_IBAN = re.compile(r"\b([A-Z]{2})\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"\b\d(?:[ -]?\d){11,18}\b")
_DIGITS = re.compile(r"\b\d{8,}\b")
# Identifiers we log on purpose; digit runs in them are not account numbers.
_IDENTIFIERS = frozenset({"request_id", "execution", "execution_name", "execution_arn", "shard",
                          "sequence", "checkpoint", "message_id", "timestamp", "owner",
                          "queue", "table", "event", "trace_id", "span_id"})
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")


def _last4(match: re.Match[str]) -> str:
    return "…" + re.sub(r"[ -]", "", match.group(0))[-4:]


def redact_text(text: str) -> str:
    """Mask secrets and PII in free text (see the module docstring for what and how)."""
    text = _WHSEC.sub("whsec_[redacted]", text)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + "[redacted]", text)
    text = _BEARER.sub("Bearer [redacted]", text)
    text = mask_pans(mask_ibans(text))  # any case, any separator, glued to words
    text = _IBAN.sub(lambda m: m.group(1) + _last4(m), text)
    text = _CARD.sub(_last4, text)
    text = _DIGITS.sub(_last4, text)
    return _EMAIL.sub(lambda m: "…@" + m.group(1), text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: "[redacted]" if _SECRET_KEYS.search(str(k)) else _redact(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redaction_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key in _IDENTIFIERS:
            continue
        if _SECRET_KEYS.search(key):
            event_dict[key] = "[redacted]"
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


def _foreign(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A standard-library record: its free-text message moves to ``message`` (redacted);
    ``event`` becomes ``log.<logger>``, so the identifier key never carries free text."""
    record = event_dict.get("_record")
    event_dict["message"] = event_dict.pop("event", "")
    event_dict["event"] = f"log.{record.name}" if record is not None else "log"
    return event_dict


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    text = "".join(traceback.format_exception(kind, exc, tb))
    sys.stderr.write(redact_text(text))


def configure_logging(level: str = "INFO", fmt: str = "json", service: str | None = None,
                      libraries_level: str = "WARNING") -> None:
    """Configure structlog and the standard-library loggers once per process (entry point).

    Standard-library records (uvicorn, botocore, asyncio, …) go through the same
    redaction and renderer as our events, at ``libraries_level``; an uncaught
    exception's traceback is redacted too.
    """
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.contextvars.merge_contextvars, trace_ids,
                           structlog.processors.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso", utc=True), _foreign],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, redaction_processor, renderer]))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.getLevelName(libraries_level))
    sys.excepthook = _excepthook
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        trace_ids,  # trace_id, span_id of the current span (shared/tracing.py)
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redaction_processor,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
