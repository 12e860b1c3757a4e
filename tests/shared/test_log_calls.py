"""No log call in the product passes ``event=``.

structlog's bound-logger methods take the event name as their first parameter,
named ``event``: ``log.info("name", event=...)`` raises ``TypeError`` at call
time, usually on a path no test walks (this is how SES events went
unacknowledged). ``bind(event=...)`` is silently overwritten by the event name.
The check reads the source tree's syntax, so it covers every path, run or not.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "services", "tools")
LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical",
                         "fatal", "msg", "log", "bind", "new", "ainfo", "adebug", "awarning",
                         "aerror", "aexception", "acritical"})


def offending_calls(source: str, filename: str) -> list[str]:
    """``file:line`` of every ``<x>.<log method>(..., event=...)`` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS
                and any(k.arg == "event" for k in node.keywords)):
            found.append(f"{filename}:{node.lineno}")
    return found


def test_no_log_call_passes_event_as_a_field() -> None:
    files = [f for pkg in PACKAGES for f in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 50, "the check must see the source tree"
    found = [hit for f in files
             for hit in offending_calls(f.read_text(), str(f.relative_to(ROOT)))]
    assert found == [], ("structlog's first parameter is `event`; log the field under "
                         f"another name (e.g. ses_event=...): {found}")


def test_the_check_sees_the_mistake() -> None:
    bad = 'log.info("ses_events.event", request_id=r, event=kind)\nlog.bind(event=1)\n'
    good = 'log.info("ses_events.event", ses_event=kind)\nMETRIC.labels(event="Send")\n'
    assert offending_calls(bad, "bad.py") == ["bad.py:1", "bad.py:2"]
    assert offending_calls(good, "good.py") == []
