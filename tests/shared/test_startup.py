"""The entry point's start-up with the cyclic collector paused (shared/startup.py): it is
always resumed, and what start-up made is frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shared.startup import pause_collector, resume_collector
from tools import cli


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    yield
    gc.enable()
    gc.unfreeze()      # back into the oldest generation: this process goes on as before


def test_start_up_is_frozen_once_resumed() -> None:
    pause_collector()
    assert not gc.isenabled()
    made = [[n] for n in range(10_000)]         # what a start-up allocates
    resume_collector()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(made), "start-up's objects left out of later passes"


def test_resuming_an_unpaused_collector_changes_nothing() -> None:
    gc.unfreeze()
    resume_collector()
    assert gc.isenabled() and gc.get_freeze_count() == 0


@pytest.mark.parametrize("argv", [["--help"], ["run", "no-such-service"], [],
                                  ["emulator", "--port", "not-a-port"]])
def test_the_command_line_resumes_the_collector_whatever_happens(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert gc.isenabled()


def test_a_service_that_fails_to_start_resumes_the_collector(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``run`` leaves resuming to the built service; a start that fails before (here, a
    setting it refuses) is resumed by the command line on the way out."""
    monkeypatch.setenv("REMITFLOW_VISIBILITY_TIMEOUT_S", "not-a-number")
    with pytest.raises((SystemExit, ValueError)):
        cli.main(["run", "enrichment"])
    assert gc.isenabled()
