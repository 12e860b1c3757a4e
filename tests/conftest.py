"""Shared fixtures: one emulator and one bootstrapped stack per test process.

The emulator is moto server in its own process on a free loopback port, spoken to
over real HTTP; nothing in the AWS APIs is mocked. Under ``make test`` (``pytest -n
$PYTEST_WORKERS``) each xdist worker has its own emulator and its own stack.

``env`` is that session's stack (built once, reference data loaded once): tests
isolate themselves by key (their own request ids, payees and partners). A test that
needs resources no other test touches (it breaks them, counts everything on a queue,
or runs a worker that must see only its own messages) asks for them in one line:
``@pytest.mark.own_stack("why")``, and its ``env`` is then freshly bootstrapped
under its own prefix (one stack is always being built ahead, while tests run).
Layers and budgets: ``tests/layers.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from shared.aws.clients import AwsClients
from shared.aws.emulator import wait_until_up
from shared.provision.bootstrap import load_reference_data
from tests.helpers import AllSettings, Env, free_port, test_settings
from tests.layers import (
    budget_report,
    file_durations,
    longest_files_first,
    mark_layers,
    over_budget,
    record,
    waiting_apart,
)
from tools.demo import reference_data
from tools.stack import bootstrap_stack

SESSION_API_TOKEN = "session-" + secrets.token_urlsafe(24)


def pytest_configure(config: pytest.Config) -> None:
    for line in ("unit: no emulator, no processes (make test-fast)",
                 "e2e: against the embedded emulator and/or real service processes",
                 "browser: headless Chromium against the console",
                 "deploy: chart, CDK, IAM and container checks",
                 "slow: allowed past the per-test budget (tests/layers.py SLOW)",
                 "own_stack(reason): this test's env is a fresh stack of its own"):
        config.addinivalue_line("markers", line)
    # ``--dist loadfile`` hands files out in collection order, which
    # ``longest_files_first`` sets, unless xdist re-sorts them by their number of
    # tests first (its default): then a long file of few tests (the dependency
    # faults, the webhook receiver down and up) started last and ran alone at the end.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


@pytest.hookimpl(optionalhook=True)     # xdist's hook; absent with -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` with at most a few waiting files at once (tests/layers.py)."""
    return waiting_apart(config, log) if config.getvalue("dist") == "loadfile" else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_layers(items)
    longest_files_first(items)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            exitstatus: int, config: pytest.Config) -> None:
    problems = budget_report()
    if problems:
        terminalreporter.section("per-test budget exceeded", red=True)
        for line in problems:
            terminalreporter.write_line(line)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record(report)


#: the test's folder its service processes write their output to (``Env.logs``)
SERVICE_LOGS = pytest.StashKey[Path]()
LOG_TAIL_LINES = 40


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test shows the last lines each of its service processes wrote: the one
    place a crash or a stuck worker explains itself, in CI's output too."""
    report: pytest.TestReport = yield
    logs = item.stash.get(SERVICE_LOGS, None)
    if report.failed and logs is not None:
        for log in sorted(logs.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            report.sections.append((f"service output: {log.name} (last {len(tail)} lines)",
                                    "\n".join(tail)))
    return report


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--write-durations", metavar="PATH", default=None,
                     help="after a run that passed, write each file's seconds to PATH "
                          "(make test-durations: the order make test hands files out)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if over_budget() and session.exitstatus == 0:
        session.exitstatus = 1
    out = session.config.getoption("--write-durations")
    controller = not hasattr(session.config, "workerinput")
    if out and controller and session.exitstatus == 0:
        Path(out).write_text(json.dumps(file_durations(), indent=1) + "\n")


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This process's emulator; its output is kept in the session's temporary folder
    (``emulator.log`` beside the tests' own folders) for a failure to be read after."""
    port = free_port()
    env = {**os.environ, "MOTO_PORT": str(port)}
    log = (tmp_path_factory.getbasetemp() / "emulator.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "emulator", "--port",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_until_up("127.0.0.1", port, timeout_s=120)
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1",
                           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           # Services refuse to start without one (secure by default).
                           "REMITFLOW_API_TOKEN": SESSION_API_TOKEN})
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class StackPool:
    """Stacks for this test process: the session's, and a fresh one for each
    ``own_stack`` test, bootstrapped one ahead while the current test runs (most of a
    test is waiting on the emulator).

    Every bootstrap runs on one event loop of the pool's own thread, with one set of
    clients: a set of clients per stack (a session, seven clients and their method
    tables) had cost as much CPU as the bootstrap's 93 calls."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stack-pool",
                                        daemon=True)
        self._thread.start()
        self._clients: AwsClients | None = None
        self._one_at_a_time = asyncio.Lock()
        self._next: Future[AllSettings] | None = None

    async def _bootstrapped(self, prefix: str) -> AllSettings:
        settings = test_settings(prefix)
        async with self._one_at_a_time:
            if self._clients is None:
                self._clients = await AwsClients(settings).__aenter__()
            await bootstrap_stack(settings, self._clients)
            await load_reference_data(self._clients, settings, reference_data())
        return settings

    def build(self, prefix: str) -> Future[AllSettings]:
        return asyncio.run_coroutine_threadsafe(self._bootstrapped(prefix), self._loop)

    def take(self) -> AllSettings:
        ready = self._next or self.build(_own_prefix())
        self._next = self.build(_own_prefix())
        return ready.result()

    def close(self) -> None:
        if self._next is not None:
            self._next.cancel()
        if self._clients is not None:
            asyncio.run_coroutine_threadsafe(
                self._clients.__aexit__(None, None, None), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


def _own_prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def stack_pool(emulator: str) -> Iterator[StackPool]:
    pool = StackPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def session_prefix(stack_pool: StackPool) -> str:
    """The shared stack's prefix; built on first use (a unit-only run builds nothing)."""
    prefix = "s" + uuid.uuid4().hex[:10]
    # First asked for from inside a test's event loop: built on the pool's own loop.
    stack_pool.build(prefix).result()
    return prefix


class WorkerClients:
    """The AWS clients of this test process, opened in each test's own event loop.

    A connection pool belongs to an event loop, and each test has a loop of its own;
    the clients themselves (a session, seven method tables, their event hooks) do not.
    Building seven clients per test took a fifth of a worker's CPU (``py-spy --gil``).
    So they are built once, and each test opens them (fresh connection pools on its
    loop) and closes them at its end. A test that registers a hook on them
    unregisters it; a test that asks for two stacks gets clients of its own for the
    second."""

    def __init__(self) -> None:
        self._clients: AwsClients | None = None
        self._open = False

    @staticmethod
    def _each(clients: AwsClients) -> list[Any]:
        """Every client ``AwsClients`` holds (its fields but its settings and exit stack)."""
        return [getattr(clients, f.name) for f in dataclasses.fields(clients)
                if f.name not in ("settings", "_stack")]

    @asynccontextmanager
    async def opened(self, settings: AllSettings) -> AsyncIterator[AwsClients]:
        if self._open:
            async with AwsClients(settings) as own:
                yield own
            return
        if self._clients is None:
            self._clients = await AwsClients(settings).__aenter__()
        else:
            for client in self._each(self._clients):
                # aiobotocore's pool lock binds to the loop that first waited on it
                client._endpoint.http_session._sessions_lock = asyncio.Lock()
                await client.__aenter__()
        self._open = True
        try:
            yield self._clients
        finally:
            self._open = False
            for client in self._each(self._clients):
                await client.__aexit__(None, None, None)


_worker_clients = WorkerClients()


async def _env(settings: AllSettings, endpoint: str,
               request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    logs: Path = request.getfixturevalue("tmp_path")
    request.node.stash[SERVICE_LOGS] = logs
    async with _worker_clients.opened(settings) as clients:
        yield Env(settings=settings, clients=clients, endpoint=endpoint, logs=logs)


@pytest.fixture
async def env(request: pytest.FixtureRequest, emulator: str) -> AsyncIterator[Env]:
    """The session's stack, or a fresh one of its own for an ``own_stack`` test."""
    own = request.node.get_closest_marker("own_stack")
    if own is not None:
        assert own.args and str(own.args[0]).strip(), "own_stack needs a one-line reason"
        settings = request.getfixturevalue("stack_pool").take()
    else:
        settings = test_settings(request.getfixturevalue("session_prefix"))
    async for ready in _env(settings, emulator, request):
        yield ready


@pytest.fixture
async def fresh_env(request: pytest.FixtureRequest, emulator: str) -> AsyncIterator[Env]:
    """A stack of this test's own, whatever its module's marks: for a test that asserts
    on everything in a queue or a table (the invariant suites)."""
    async for ready in _env(request.getfixturevalue("stack_pool").take(), emulator, request):
        yield ready

