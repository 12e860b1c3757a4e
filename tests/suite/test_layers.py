"""The suite's own rules (tests/layers.py): layers given by place and fixtures, and a
budget whose exceptions each name an existing test and say why."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests import layers
from tests.layers import BUDGET_S, SLOW, WAITING, WAITING_AT_ONCE, base_id, layer_of, next_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("nodeid", sorted(SLOW))
def test_every_slow_exception_names_a_test_and_a_reason(nodeid: str) -> None:
    path, _, name = nodeid.partition("::")
    source = ROOT / path
    assert source.is_file(), f"{nodeid}: no such file"
    functions = {n.name for n in ast.walk(ast.parse(source.read_text()))
                 if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    assert name.split("::")[-1] in functions, f"{nodeid}: no such test"
    assert len(SLOW[nodeid].split()) >= 4, f"{nodeid}: say why in a sentence"


def test_the_budget_is_a_minute() -> None:
    assert BUDGET_S == 60


def test_parameters_share_their_test_s_budget_entry() -> None:
    assert base_id("tests/e2e/test_crash.py::test_kill[enrichment-3]") == \
        "tests/e2e/test_crash.py::test_kill"


def test_this_test_is_a_unit_test(request: pytest.FixtureRequest) -> None:
    assert layer_of(request.node) == "unit"
    assert request.node.get_closest_marker("unit") is not None


def test_a_test_with_the_emulator_is_never_a_unit_test(request: pytest.FixtureRequest) -> None:
    items = [i for i in request.session.items if "env" in getattr(i, "fixturenames", ())]
    if not items:
        pytest.skip("no test on the emulator was selected (make test-fast)")
    for item in items:
        assert not item.get_closest_marker("unit"), item.nodeid
        assert any(item.get_closest_marker(m) for m in ("e2e", "browser", "deploy")), item.nodeid
    browser = [i for i in request.session.items if "/browser/" in str(i.path)]
    assert all(i.get_closest_marker("browser") for i in browser)


def test_files_are_handed_out_longest_first_each_in_its_own_order(
        request: pytest.FixtureRequest) -> None:
    """``--dist loadfile`` hands out files in collection order: the longest come first,
    so none of them starts last and runs alone."""
    items = request.session.items
    files = list(dict.fromkeys(layers.file_of(i.nodeid) for i in items))
    assert len(files) == len({layers.file_of(i.nodeid) for i in items}), \
        "each file's tests together"
    measured = layers.measured()
    timed = [f for f in files if f in measured]
    assert [measured[f] for f in timed] == sorted((measured[f] for f in timed), reverse=True)


def test_measured_seconds_decide_the_order_and_estimates_fill_in(
        request: pytest.FixtureRequest) -> None:
    items = list(request.session.items)          # a copy: the session keeps its order
    files = list(dict.fromkeys(layers.file_of(i.nodeid) for i in items))
    if len(files) < 3:
        pytest.skip("needs more of the suite collected")
    short, long = files[0], files[1]
    layers.longest_files_first(items, durations={short: 0.5, long: 10_000.0})
    order = list(dict.fromkeys(layers.file_of(i.nodeid) for i in items))
    assert order[0] == long
    guessed = {f: sum(layers.estimate(i) for i in items if layers.file_of(i.nodeid) == f)
               for f in files if f not in (short, long)}
    assert all(order.index(f) < order.index(short) for f, s in guessed.items() if s > 0.5)


def test_every_measured_file_exists() -> None:
    missing = [f for f in layers.measured() if not (ROOT / f).is_file()]
    assert missing == [], "run make test-durations"


def test_xdist_keeps_the_collection_order(pytestconfig: pytest.Config) -> None:
    """xdist re-sorts ``--dist loadfile``'s files by their number of tests unless told
    not to, which undid the order above: a long file of few tests came last and ran
    alone at the end of the run (tests/conftest.py turns the re-sort off)."""
    if not hasattr(pytestconfig.option, "loadscopereorder"):
        pytest.skip("pytest-xdist is not installed")
    assert pytestconfig.option.loadscopereorder is False


@pytest.mark.parametrize("path", sorted(WAITING))
def test_every_waiting_file_exists_and_says_why(path: str) -> None:
    assert (ROOT / path).is_file(), f"{path} is not a test file"
    assert WAITING[path].strip(), f"{path} needs a reason"


def test_at_most_a_few_waiting_files_run_at_once() -> None:
    waiting = sorted(WAITING)[:WAITING_AT_ONCE]
    assert next_file(["tests/a.py"], waiting[:-1]) == "tests/a.py"
    assert next_file([sorted(WAITING)[-1], "tests/a.py"], waiting[:-1]) == sorted(WAITING)[-1]
    # the cap reached: the first file that computes instead, else still the next one
    assert next_file([sorted(WAITING)[-1], "tests/a.py"], waiting) == "tests/a.py"
    assert next_file([sorted(WAITING)[-1]], waiting) == sorted(WAITING)[-1]


def test_make_test_hands_out_files_through_the_cap(pytestconfig: pytest.Config,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``--dist loadfile`` the scheduler is the suite's (tests/conftest.py)."""
    if not pytestconfig.pluginmanager.hasplugin("xdist"):
        pytest.skip("pytest-xdist is not loaded")
    from xdist.workermanage import Producer  # type: ignore[import-untyped]

    monkeypatch.setattr(pytestconfig.option, "dist", "loadfile")
    monkeypatch.setattr(pytestconfig.option, "tx", ["popen"] * 2, raising=False)
    scheduler = pytestconfig.pluginmanager.hook.pytest_xdist_make_scheduler(
        config=pytestconfig, log=Producer("test"))
    assert type(scheduler).__name__ == "WaitingApart"
