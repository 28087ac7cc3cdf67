from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.app import create_app
from ferry.db.engine import create_engine
from ferry.settings import Settings
from tests.support.services import (
    TEST_REDIS_URL,
    leftovers,
    migrated_database,
    redis_namespace,
    threads_alive,
)

HYPOTHESIS_HOME = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    # A shell without job control starts a background command with SIGINT ignored, and
    # the processes the tests start would inherit that: they would never see the Ctrl-C
    # a test sends them as a terminal does. Python's own handler is what a terminal meets.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # Hypothesis keeps its caches in `.hypothesis/` of the working directory (the
    # repository) unless told otherwise, from the first strategy a test module builds.
    if "HYPOTHESIS_STORAGE_DIRECTORY" not in os.environ:
        home = Path(tempfile.mkdtemp(prefix="ferry-hypothesis-"))
        config.stash[HYPOTHESIS_HOME] = home
        os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(home)


def pytest_unconfigure(config: pytest.Config) -> None:
    if (home := config.stash.get(HYPOTHESIS_HOME, None)) is not None:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated PostgreSQL database of this test run, for the API without workers.

    It keeps the PENDING jobs tests leave (the `client` below has no worker, on
    purpose): a worker on it would run them all, since its recovery pass re-sends
    every overdue PENDING job of its database. Tests that start workers use
    `own_database` or `module_database` instead."""
    with migrated_database() as url:
        yield url


@pytest.fixture
def own_database() -> Iterator[str]:
    """A migrated database of the test's own, for a test that starts workers."""
    with migrated_database() as url:
        yield url


@pytest.fixture(scope="module")
def module_database() -> Iterator[str]:
    """A migrated database of the module's own, for a module whose tests share workers."""
    with migrated_database() as url:
        yield url


@pytest.fixture(scope="session")
def namespace() -> Iterator[str]:
    with redis_namespace() as ns:
        yield ns


@pytest.fixture
def own_namespace() -> Iterator[str]:
    """A Redis namespace of the test's own: the session's queue holds the messages of
    the jobs the `client` below creates, which a worker there would run."""
    with redis_namespace() as ns:
        yield ns


@pytest.fixture(scope="session")
def settings(database_url: str, namespace: str) -> Settings:
    return Settings(database_url=database_url, redis_url=TEST_REDIS_URL, redis_namespace=namespace)


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The real app on PostgreSQL and Redis, with no worker: jobs stay where the API puts them."""
    app = create_app(settings, run_worker=False)
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Direct access to the test database, to arrange states the API cannot reach alone."""
    db = create_engine(settings, pool_size=2)
    yield db
    await db.dispose()


LEFTOVERS = pytest.StashKey[list[str]]()
THREADS = pytest.StashKey[list[str]]()


@pytest.hookimpl(trylast=True)  # after the session's fixtures are torn down
def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run fails if its tests left anything behind on the servers they share."""
    left = session.config.stash[LEFTOVERS] = leftovers()
    if left:
        session.config.stash[THREADS] = threads_alive()
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if left := config.stash.get(LEFTOVERS, []):
        terminalreporter.section("left behind (each test must remove what it makes)", red=True)
        for line in left:
            terminalreporter.line(line, red=True)
        terminalreporter.section("threads alive at the end")
        for line in config.stash.get(THREADS, []):
            terminalreporter.line(line)
