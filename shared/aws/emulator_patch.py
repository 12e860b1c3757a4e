"""How the emulator patches moto: once per process, against the pinned moto, loudly.

Every ``shared/aws/emulator_*.py`` module changes some of moto's internals (for speed,
or to behave as AWS does: ``docs/emulator.md``). Each installs through :func:`once`,
checks the installed moto with :func:`check_version` and reaches every attribute it
replaces through :func:`require`, so a moto that moved refuses to start
(``EmulatorPatchError``) instead of running silently unpatched or half-patched.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

#: The moto release whose internals this module was written against.
VERIFIED_MOTO = "5.2.5"


def once(patch: Callable[[], None]) -> Callable[[], None]:
    """``patch`` run at most once per process, under a lock: every emulator patch
    (``shared/aws/emulator_*.py``) is installed this way, so installing is idempotent
    and two threads never patch the same function twice."""
    lock = threading.Lock()
    done = False

    @functools.wraps(patch)
    def run() -> None:
        nonlocal done
        with lock:
            if not done:
                patch()
                done = True

    return run


class EmulatorPatchError(RuntimeError):
    """moto is not the version (or no longer has the internals) these caches rely on."""


def require(module: Any, name: str) -> Any:
    try:
        return getattr(module, name)
    except AttributeError:
        raise EmulatorPatchError(
            f"moto {_moto_version()} has no {module.__name__}.{name}: the emulator's "
            "patches of moto (shared/aws/emulator_*.py) need updating for this moto; see "
            "docs/emulator.md") from None


def _moto_version() -> str:
    import moto

    return str(moto.__version__)


def check_version(version: str | None = None) -> None:
    """Refuse any moto but the verified one (``constraints.txt`` pins it)."""
    found = version or _moto_version()
    if found != VERIFIED_MOTO:
        raise EmulatorPatchError(
            f"moto {found} is installed, but the emulator's patches of moto "
            f"(shared/aws/emulator_*.py) were verified against moto {VERIFIED_MOTO}. "
            "Re-check the patched internals (docs/emulator.md) and update VERIFIED_MOTO, "
            "or install the pinned version: pip install -c constraints.txt -e '.[dev]'")
