"""The real servers the integration tests use, each isolated per test run.

PostgreSQL: a fresh database per run (dropped at the end). Redis: a key
namespace per run (its keys deleted at the end). Both fail loudly, naming the
server, when it is not reachable: a test never skips for want of a service.
Each database, namespace and Redis database made here is remembered with the
test that made it: `leftovers()` names those that are not gone at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import redis

from ferry.migrate import upgrade

ADMIN_DATABASE_URL = os.environ.get(
    "FERRY_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
TEST_REDIS_URL = os.environ.get("FERRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class Made:
    kind: str  # "database", "namespace" or "redis-db"
    name: str
    by: str  # the test (and phase) that made it


_made: list[Made] = []


def _remember(kind: str, name: str) -> None:
    # pytest names the running test (and its phase) in this variable.
    _made.append(Made(kind, name, os.environ.get("PYTEST_CURRENT_TEST", "outside any test")))


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
    _remember("database", name)
    try:
        yield with_database(ADMIN_DATABASE_URL, name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def migrated_database(prefix: str = "ferry_test") -> Iterator[str]:
    """`postgres_database()`, with Ferry's tables."""
    with postgres_database(prefix) as url:
        upgrade(url)
        yield url


@contextmanager
def redis_namespace() -> Iterator[str]:
    """A unique key prefix on the test Redis; every key under it is deleted afterwards."""
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {TEST_REDIS_URL}: {exc}", pytrace=False)
    namespace = f"ferry-test-{uuid.uuid4().hex[:12]}"
    _remember("namespace", namespace)
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
    _remember("redis-db", url)
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


async def _databases_left(names: list[str]) -> list[str]:
    conn = await asyncpg.connect(_plain(ADMIN_DATABASE_URL), timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname = ANY($1::text[])", names
        )
    finally:
        await conn.close()
    return [row["datname"] for row in rows]


def leftovers() -> list[str]:
    """What this run's tests made and left behind, a line each: Redis keys under
    their namespaces, data in their Redis databases, their PostgreSQL databases."""
    lines: list[str] = []
    redis_made = [made for made in _made if made.kind in ("namespace", "redis-db")]
    if redis_made:
        client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=3)
        try:
            for made in redis_made:
                if made.kind == "namespace":
                    keys = sorted(
                        map(bytes.decode, client.scan_iter(match=f"{made.name}*", count=1000))
                    )
                else:
                    with redis.Redis.from_url(made.name) as other:
                        keys = sorted(map(bytes.decode, other.scan_iter(count=1000)))
                if keys:
                    lines.append(
                        f"{len(keys)} Redis keys in {made.kind} {made.name} of {made.by}: "
                        + ", ".join(keys[:5])
                        + (", ..." if len(keys) > 5 else "")
                        + _heartbeats(client, keys)
                    )
        finally:
            client.close()
    databases = {made.name: made for made in _made if made.kind == "database"}
    if databases:
        for name in asyncio.run(_databases_left(list(databases))):
            lines.append(f"PostgreSQL database {name} of {databases[name].by}")
    return lines


def _heartbeats(client: redis.Redis, keys: list[str]) -> str:
    """Who wrote a Dramatiq heartbeat left behind, and how long ago: which broker kept
    talking to Redis after its test was over."""
    now_ms = time.time() * 1000
    found = []
    for key in (key for key in keys if key.endswith("__heartbeats__")):
        members: list[tuple[bytes, float]] = client.zrange(key, 0, -1, withscores=True)  # type: ignore[assignment]
        found += [f"{member.decode()} {now_ms - score:,.0f} ms ago" for member, score in members]
    return f" (heartbeats: {', '.join(found)})" if found else ""


def threads_alive() -> list[str]:
    """The threads of this test process still running at the end, each with where it
    is: a worker loop that outlived its test shows here with what it is stuck in."""
    frames = sys._current_frames()
    lines = []
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.ident not in frames:
            continue
        where = traceback.format_stack(frames[thread.ident], limit=8)
        lines.append(f"thread {thread.name} (daemon={thread.daemon}):")
        lines += ["  " + line.rstrip().replace("\n", "\n  ") for line in where]
    return lines
