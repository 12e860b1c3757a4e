"""No loop sleeps past a stop: a loop that waits between rounds uses the stop-aware
helpers (``shared.retry.sleep_or_stop`` and ``pause``, ``ticker``), never a bare
``asyncio.sleep``, so SIGTERM ends it at once instead of after its interval.

The check reads the source tree's syntax (every path, run or not). A bare sleep in
a loop is allowed only where it is listed below with the reason it cannot delay a
stop; a listed place that no longer sleeps fails too, so the list stays true.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "services", "tools")

# "path::function" → why its bare sleep in a loop cannot hold up a stop.
ALLOWED = {
    "shared/aws/sqs.py::keep_visible":
        "a visibility heartbeat of messages in hand; cancelled by its caller as soon as "
        "their work ends, and that work is what the drain waits for",
    "shared/operations/deadletters.py::heartbeat":
        "the same heartbeat for dead letters an operator acts on; cancelled when the "
        "action ends",
    "tools/dev.py::_watch":
        "the dev runner: SIGINT/SIGTERM/SIGHUP raise KeyboardInterrupt, which ends "
        "asyncio.run (tools/dev.py, stop_signals)",
    **{f"tools/{path}": "developer tooling, not a service: a finite run that Ctrl-C ends"
       for path in ("bench/bankfiles/worker.py::_main", "bench/harness.py::start",
                    "bench/harness.py::_collect", "bench/harness.py::run",
                    "bench/harness.py::sender", "bench/surge.py::surge",
                    "bench/surge.py::sample", "demo.py::wait_for_files",
                    "ratebench.py::probe", "ratebench.py::load", "soak.py::_queues_left",
                    "soak.py::_send_paced", "soak.py::soak", "soak.py::_resolve_unsent")},
}

LOOPS = (ast.While, ast.For, ast.AsyncFor)
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def sleeps_in_loops(source: str, filename: str) -> list[str]:
    """``file::function`` of every ``asyncio.sleep(...)`` (or a bare imported
    ``sleep``) inside a loop of the same function."""
    tree = ast.parse(source, filename=filename)
    found: list[str] = []

    def visit(node: ast.AST, function: str, in_loop: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, FUNCTIONS):
                visit(child, child.name, False)
                continue
            if in_loop and isinstance(child, ast.Call) and _is_sleep(child.func):
                found.append(f"{filename}::{function}")
            visit(child, function, in_loop or isinstance(child, LOOPS))

    visit(tree, "<module>", False)
    return found


def _is_sleep(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "sleep" and isinstance(func.value, ast.Name) \
            and func.value.id == "asyncio"
    return isinstance(func, ast.Name) and func.id == "sleep"


def test_the_check_finds_a_bare_sleep_in_a_loop_and_nothing_else() -> None:
    source = ("import asyncio\n"
              "async def poll(stop):\n"
              "    while not stop.is_set():\n"
              "        await asyncio.sleep(5)\n"
              "async def once():\n"
              "    await asyncio.sleep(1)\n"
              "    for _ in range(3):\n"
              "        await sleep_or_stop(stop, 1)\n")
    assert sleeps_in_loops(source, "x.py") == ["x.py::poll"]


def test_no_loop_sleeps_past_a_stop() -> None:
    files = [f for pkg in PACKAGES for f in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 50, "the check must see the source tree"
    found = {hit for f in files
             for hit in sleeps_in_loops(f.read_text(), str(f.relative_to(ROOT)))}
    assert found - set(ALLOWED) == set(), (
        "a loop sleeps with asyncio.sleep: use shared.retry.sleep_or_stop (or ticker) "
        "so a stop ends the wait, or list it in ALLOWED with the reason it cannot delay one")
    assert set(ALLOWED) - found == set(), "ALLOWED lists a place that no longer sleeps"
