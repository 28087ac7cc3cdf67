"""The real servers the integration tests use, each isolated per test run.

PostgreSQL: a fresh database per run (dropped at the end). Redis: a key
namespace per run (its keys deleted at the end). Both fail loudly, naming the
server, when it is not reachable: a test never skips for want of a service.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
import redis

ADMIN_DATABASE_URL = os.environ.get(
    "FERRY_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
TEST_REDIS_URL = os.environ.get("FERRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_plain(ADMIN_DATABASE_URL), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def postgres_database(prefix: str = "ferry_test") -> Iterator[str]:
    """Create a uniquely named database; yield its SQLAlchemy URL; drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is not reachable at {ADMIN_DATABASE_URL}: {exc}", pytrace=False)
    try:
        yield with_database(ADMIN_DATABASE_URL, name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def redis_namespace() -> Iterator[str]:
    """A unique key prefix on the test Redis; every key under it is deleted afterwards."""
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {TEST_REDIS_URL}: {exc}", pytrace=False)
    namespace = f"ferry-test-{uuid.uuid4().hex[:12]}"
    try:
        yield namespace
    finally:
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@contextmanager
def private_redis_db() -> Iterator[str]:
    """A whole Redis database of its own (an empty one, claimed), for tests that
    FLUSHDB it; flushed again afterwards. Never touches a database holding data."""
    base = TEST_REDIS_URL.rsplit("/", 1)[0]
    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{base}/{number}", socket_connect_timeout=3)
        try:
            if client.dbsize() == 0 and client.set("ferry-test-claim", "1", nx=True):
                break
        except redis.RedisError as exc:
            pytest.fail(f"Redis is not reachable at {base}: {exc}", pytrace=False)
        finally:
            client.close()
    else:
        pytest.fail(f"no empty Redis database on {base} to claim for a FLUSHDB test", pytrace=False)
    url = f"{base}/{number}"
    try:
        yield url
    finally:
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()


class RedisServer:
    """A redis-server of a test's own, on a free port, that the test may restart."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {self.port}", pytrace=False)
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        """Kill it (no shutdown save): what a crash or a restart looks like to clients."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@contextmanager
def redis_server(port: int, workdir: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (Debian package redis-server)", pytrace=False)
    server = RedisServer(port, workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
