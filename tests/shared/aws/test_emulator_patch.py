"""How every emulator patch installs: once per process, and only over the pinned moto."""

from __future__ import annotations

import threading
import time
import types

import pytest

from shared.aws import emulator_patch


@pytest.mark.unit
def test_another_moto_fails_loudly_at_start() -> None:
    with pytest.raises(emulator_patch.EmulatorPatchError, match="verified against moto 5"):
        emulator_patch.check_version("5.3.0")
    emulator_patch.check_version(emulator_patch.VERIFIED_MOTO)


@pytest.mark.unit
def test_a_missing_internal_fails_loudly() -> None:
    with pytest.raises(emulator_patch.EmulatorPatchError, match=r"no gone\.parse"):
        emulator_patch.require(types.ModuleType("gone"), "parse")


@pytest.mark.unit
def test_a_patch_runs_once_however_many_threads_install_it() -> None:
    runs: list[int] = []
    entered = threading.Event()

    @emulator_patch.once
    def patch() -> None:
        entered.set()
        time.sleep(0.05)         # the others arrive while the first is still patching
        runs.append(threading.get_ident())

    threads = [threading.Thread(target=patch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    patch()
    assert entered.is_set() and len(runs) == 1


@pytest.mark.unit
def test_a_patch_that_failed_is_tried_again() -> None:
    attempts: list[int] = []

    @emulator_patch.once
    def patch() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise emulator_patch.EmulatorPatchError("moto moved")

    with pytest.raises(emulator_patch.EmulatorPatchError):
        patch()
    patch()
    patch()
    assert len(attempts) == 2
