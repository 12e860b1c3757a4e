"""The suite's layers (markers) and its per-test time budget.

Layers, given from where a test lives and what it uses, so no test has to remember:

- ``browser``: under ``tests/browser/``;  ``deploy``: under ``tests/deploy/``;
- ``e2e``: under ``tests/e2e/``, or anything that uses the emulator (``env``, ``emulator``);
- ``unit``: the rest: no emulator, no service process (``make test-fast``).

Budget: no single test (setup, call and teardown) may take longer than
``BUDGET_S`` in ``make test``; the session fails otherwise, naming the test. The few
that may are listed in :data:`SLOW`, each with its reason, and carry the ``slow``
marker. ``docs/testing.md`` has the suite's measured wall time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

BUDGET_S = 60.0

#: node id (without parameters) → why it may take longer than the budget.
SLOW: dict[str, str] = {
    "tests/deploy/test_adding_a_service.py::"
    "test_a_fourth_service_needs_one_folder_and_one_list_entry":
        "a CDK synth (Node) and five fresh Python processes on a copy of the tree, all "
        "CPU: 17-50 s beside the other tests, 75 s once in a loaded fresh clone",
    "tests/e2e/test_dependency_faults.py::test_aws_unreachable_then_back_nothing_lost":
        "holds AWS unreachable until the worker's back-off has failed two more receives, "
        "then waits for the SDK's and the worker's back-off to recover: 33-57 s",
}

#: test file → why most of its time is waiting, not computing. ``make test`` runs at
#: most ``WAITING_AT_ONCE`` of them side by side (:func:`next_file`): five of them at
#: once left the two cores half idle for a minute.
WAITING: dict[str, str] = {
    "tests/e2e/test_crash.py": "kills service processes, then waits out leases and "
                               "visibility timeouts",
    "tests/services/notification/test_ses_events.py": "waits out the event queue's "
                                                      "visibility timeout per case",
    "tests/shared/aws/test_every_consumer.py": "waits one visibility timeout per consumer",
    "tests/shared/aws/test_every_message_class.py": "waits one visibility timeout per "
                                                    "consumer",
    "tests/shared/aws/test_event_queue_backoff.py": "holds an outage, then waits out "
                                                    "the back-off",
    "tests/e2e/test_dependency_faults.py": "holds AWS and a webhook receiver down",
    "tests/e2e/test_delivery_e2e.py": "a webhook receiver down for 20 s",
}
WAITING_AT_ONCE = 3

_EMULATOR_FIXTURES = frozenset({"env", "fresh_env", "emulator", "session_prefix"})
_LAYER_DIRS = frozenset({"browser", "deploy", "e2e"})   # a directory named as its layer
_LAYERS = ("unit", "e2e", "browser", "deploy")

_durations: dict[str, float] = {}


def layer_of(item: pytest.Item) -> str:
    for name in _LAYERS:
        if item.get_closest_marker(name) is not None:
            return name
    parts = Path(str(item.path)).parts
    if "tests" in parts:
        below = parts[parts.index("tests") + 1:]
        if below and below[0] in _LAYER_DIRS:
            return below[0]
    fixtures = set(getattr(item, "fixturenames", ()))
    return "e2e" if fixtures & _EMULATOR_FIXTURES else "unit"


def base_id(nodeid: str) -> str:
    return nodeid.split("[", 1)[0]


def mark_layers(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(layer_of(item))
        if base_id(item.nodeid) in SLOW:
            item.add_marker(pytest.mark.slow(SLOW[base_id(item.nodeid)]))


#: Seconds each file took in one ``make test`` (its tests' setup, call and teardown),
#: written by ``make test-durations``. Only the order they give matters, so a stale
#: figure costs a little idle time at the end of a run, never a failure.
DURATIONS = Path(__file__).with_name("durations.json")
#: A file not measured yet: seconds per test with a stack of its own, per other
#: emulator test, per unit test.
ESTIMATE_S = {"own": 3.0, "emulator": 1.0, "unit": 0.05}


def measured() -> dict[str, float]:
    if not DURATIONS.exists():
        return {}
    data: dict[str, float] = json.loads(DURATIONS.read_text())
    return data


def file_of(nodeid: str) -> str:
    """A test's file as xdist names it (its scope): the path from the root."""
    return nodeid.split("::", 1)[0]


def estimate(item: pytest.Item) -> float:
    fixtures = set(getattr(item, "fixturenames", ()))
    own = "fresh_env" in fixtures or (item.get_closest_marker("own_stack") is not None
                                      and "env" in fixtures)
    return ESTIMATE_S["own" if own else "unit" if layer_of(item) == "unit" else "emulator"]


def longest_files_first(items: list[pytest.Item],
                         durations: dict[str, float] | None = None) -> None:
    """Order whole files longest first, keeping each file's own order: ``make test``
    hands out files (``--dist loadfile``) in this order, so a long file never starts
    last and runs alone while the other workers idle. A file's length is its measured
    time (:data:`DURATIONS`), else the sum of its tests' estimates."""
    durations = measured() if durations is None else durations
    guessed: dict[str, float] = {}
    for item in items:
        key = file_of(item.nodeid)
        guessed[key] = guessed.get(key, 0.0) + estimate(item)
    length = {key: durations.get(key, guess) for key, guess in guessed.items()}
    first_seen = {key: n for n, key in enumerate(dict.fromkeys(file_of(i.nodeid)
                                                             for i in items))}
    items.sort(key=lambda item: (-length[file_of(item.nodeid)],
                                 first_seen[file_of(item.nodeid)]))


def file_durations() -> dict[str, float]:
    """Seconds per file of this session's tests (setup, call and teardown), longest
    first: what ``make test-durations`` writes to :data:`DURATIONS`."""
    per_file: dict[str, float] = {}
    for nodeid, seconds in _durations.items():
        per_file[file_of(nodeid)] = per_file.get(file_of(nodeid), 0.0) + seconds
    return {key: round(seconds, 1) for key, seconds in
            sorted(per_file.items(), key=lambda pair: -pair[1])}


def next_file(pending: list[str], running: list[str]) -> str:
    """The file to hand a free worker: the first pending one, unless
    ``WAITING_AT_ONCE`` files of :data:`WAITING` already run, then the first pending
    file that is not one of them. Files are xdist's scopes: paths from the root."""
    if sum(f in WAITING for f in running) >= WAITING_AT_ONCE:
        busy = [f for f in pending if f not in WAITING]
        if busy:
            return busy[0]
    return pending[0]


def waiting_apart(config: pytest.Config, log: Any) -> Any:
    """xdist's ``--dist loadfile`` scheduler, handing each free worker :func:`next_file`
    instead of the next file in order (``pytest_xdist_make_scheduler``)."""
    from xdist.scheduler import LoadFileScheduling  # type: ignore[import-untyped]

    class WaitingApart(LoadFileScheduling):   # type: ignore[misc]
        def _assign_work_unit(self, node: Any) -> None:
            running = [scope for work in self.assigned_work.values()
                       for scope, tests in work.items() if not all(tests.values())]
            chosen = next_file(list(self.workqueue), running)
            self.workqueue.move_to_end(chosen, last=False)
            super()._assign_work_unit(node)

    return WaitingApart(config, log)


def record(report: pytest.TestReport) -> None:
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration


def over_budget() -> list[tuple[str, float]]:
    return sorted(((nodeid, seconds) for nodeid, seconds in _durations.items()
                   if seconds > BUDGET_S and base_id(nodeid) not in SLOW),
                  key=lambda pair: -pair[1])


def budget_report() -> list[str]:
    return [f"{seconds:6.1f}s  {nodeid}  (budget {BUDGET_S:.0f}s: make it faster, or add it "
            "to tests/layers.py SLOW with the reason)" for nodeid, seconds in over_budget()]
