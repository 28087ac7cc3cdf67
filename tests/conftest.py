from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.app import create_app
from ferry.db import create_engine
from ferry.migrate import upgrade
from ferry.settings import Settings
from tests.services import TEST_REDIS_URL, postgres_database, redis_namespace


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated PostgreSQL database of this test run."""
    with postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def namespace() -> Iterator[str]:
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
