"""moto's request routing without re-reading the disk and the class on every request.

Two steps of moto's server run for **every request** and always give the same answer:

- finding the backend for a host lists moto's package directory and ``stat``s every
  entry in it (``moto.backends.list_of_moto_modules``, from
  ``DomainDispatcherApplication.get_backend_for_host``);
- setting up a response lists every function of the response class with
  ``inspect.getmembers`` (``moto.core.utils.method_names_from_class``, from
  ``BaseResponse.setup_class``).

Measured with ``py-spy`` on a stream of ``GetItem`` calls: about 11 % of the
emulator's busy time (``docs/emulator.md``). The installed package and the classes do
not change while the server runs (every patch of ours is in place before it
starts), so each answer is computed once and kept. Tied to the pinned moto like the
Step Functions caches (:mod:`shared.aws.emulator_sfn`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable

from shared.aws.emulator_sfn import _require, check_version

_lock = threading.Lock()
_installed = False


def install() -> None:
    """Put the two caches in place (idempotent); ``EmulatorPatchError`` if moto moved."""
    global _installed
    with _lock:
        if _installed:
            return
        check_version()
        from moto import backends
        from moto.core import responses

        listing: Callable[[], Iterable[str]] = _require(backends, "list_of_moto_modules")
        names: Callable[[object], list[str]] = _require(responses, "method_names_from_class")
        modules = tuple(listing())

        def list_of_moto_modules() -> Iterable[str]:
            return modules           # callers test membership or iterate: a tuple does both

        backends.list_of_moto_modules = list_of_moto_modules
        responses.method_names_from_class = functools.lru_cache(maxsize=256)(names)  # type: ignore[attr-defined]
        _installed = True
