"""An app with a worker inside it, for the integration tests of any feature that needs
jobs to run without worker processes: the real app, a real Dramatiq worker of 8
threads on Redis (same middleware, same writer as `dramatiq actors`), and a
PostgreSQL database of the module's own. Each module that asks gets its own.

Also the browser of the tests that drive a page: Debian's Chromium, under Playwright."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from playwright.async_api import Browser, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.app import create_app
from ferry.db.engine import create_engine
from ferry.settings import Settings
from tests.support.jobs import Client
from tests.support.servers import Mailbox, smtp_server
from tests.support.services import redis_namespace

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def mail() -> Iterator[Mailbox]:
    """The SMTP server the module's worker sends email to."""
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
def worker_settings(
    settings: Settings,
    module_database: str,
    mail: Mailbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    with redis_namespace() as namespace:
        yield msgspec.structs.replace(
            settings,
            database_url=module_database,
            redis_namespace=namespace,
            smtp_url=mail.url,
            outbox_path=str(tmp_path_factory.mktemp("outbox") / "outbox.mbox"),
            webhook_secret="hook-secret",
            webhook_allow_private=True,  # the test's webhook server is on loopback
            retry_base_ms=50,
            retry_cap_ms=200,
            time_limits="sleep=1500",
            heartbeat_ms=100,
            recovery_interval_ms=200,
            recovery_grace_ms=300,
            lease_ms=1000,
        )


@pytest.fixture(scope="module")
async def worker_engine(worker_settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Direct access to the worker's database (the module's own, not the session's)."""
    db = create_engine(worker_settings, pool_size=2)
    yield db
    await db.dispose()


@pytest.fixture(scope="module")
async def app_client(worker_settings: Settings) -> AsyncIterator[Client]:
    """The app with a worker of 8 threads inside it, on PostgreSQL and Redis."""
    async with AsyncTestClient(app=create_app(worker_settings, run_worker=True)) as client:
        yield client


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM} (Debian package chromium)", pytrace=False
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        await launched.close()
