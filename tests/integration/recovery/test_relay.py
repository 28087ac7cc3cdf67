"""The outbox relay on PostgreSQL and Redis: every committed change is announced once.

A change whose committer never appended its events (it died, or Redis failed it)
is relayed once its grace has passed; one whose events were appended is not
appended again; a job that changed since gets its tenant a RESYNC instead of a
stale event; a row younger than the grace is left to its committer. What the
tests look at is what subscribers see, the tenant's stream, and the outbox table.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db import outbox
from ferry.db.engine import create_engine
from ferry.db.jobs import Enqueued, NewRow, create_jobs
from ferry.db.models import Job, JobEventOutbox, JobStatus, new_mark, utcnow
from ferry.db.transitions import Outcome
from ferry.events.event import JobEvent, pending_events
from ferry.events.feed import FeedItem, Resync, follow
from ferry.events.log import Committed
from ferry.events.redis_log import RedisEventLog
from ferry.settings import Settings
from ferry.worker.loop import BackgroundLoop
from tests.support.jobs import new_tenant
from tests.support.services import TEST_REDIS_URL
from tests.support.writer import start_writer

GRACE_MS = 100  # short, so that a test can wait it out


@dataclass(frozen=True)
class Servers:
    engine: AsyncEngine  # a database of the test's own
    log: RedisEventLog  # in a Redis namespace of the test's own


@pytest.fixture
async def servers(
    settings: Settings, own_database: str, own_namespace: str
) -> AsyncIterator[Servers]:
    engine = create_engine(
        msgspec.structs.replace(settings, database_url=own_database), pool_size=4
    )
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    try:
        yield Servers(engine, RedisEventLog(client, own_namespace, retain=1000))
    finally:
        await client.aclose()
        await engine.dispose()


async def created(engine: AsyncEngine, *tenants: str) -> tuple[list[Enqueued], uuid.UUID]:
    """A job per tenant, created by one committed statement with its outbox row (whose
    events nobody appended yet); the jobs and the row's mark."""
    mark = new_mark()
    rows = [
        NewRow(tenant, "sleep", {"delayMs": 0}, max_attempts=3, delay_ms=0) for tenant in tenants
    ]
    return await create_jobs(engine, rows, mark), mark


async def announce(log: RedisEventLog, jobs: Sequence[Enqueued], mark: uuid.UUID) -> None:
    """What the committer of the jobs' creation does after its commit."""
    await log.append([Committed(pending_events(jobs, utcnow()), mark)])


async def stream(log: RedisEventLog, tenant: str) -> list[dict[str, Any]]:
    """Every entry of the tenant's stream, decoded, oldest first."""
    entries = await log.read(tenant, 0, 1000)
    assert entries is not None
    return [msgspec.json.decode(data) for data in entries]


def told(entries: list[dict[str, Any]]) -> list[tuple[int, str, str | None, str]]:
    """(seq, type, job, status) of each entry: what a subscriber learns from it."""
    return [
        (entry["seq"], entry["type"], entry.get("jobId"), entry.get("status", ""))
        for entry in entries
    ]


async def outbox_rows(engine: AsyncEngine) -> dict[uuid.UUID, list[uuid.UUID]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(JobEventOutbox.id, JobEventOutbox.job_ids))
        return {row.id: list(row.job_ids) for row in rows}


async def past_grace() -> None:
    await asyncio.sleep(GRACE_MS / 1000 + 0.1)


async def test_a_change_never_appended_is_relayed_once_and_its_row_deleted(
    servers: Servers,
) -> None:
    tenant = new_tenant()
    [job], mark = await created(servers.engine, tenant)
    assert set(await outbox_rows(servers.engine)) == {mark}
    relay = outbox.Relay(servers.engine, servers.log, GRACE_MS)
    await past_grace()

    assert await relay.relay() == 1
    assert told(await stream(servers.log, tenant)) == [(1, "JOB_UPDATE", str(job.id), "PENDING")]
    assert await outbox_rows(servers.engine) == {}
    assert await servers.log.appended([mark]) == [True]
    # Nothing is left to relay: another pass, by this relay or another, appends nothing.
    assert await relay.relay() == 0
    assert await outbox.Relay(servers.engine, servers.log, GRACE_MS).relay() == 0
    assert relay.relayed == 1
    assert await servers.log.current(tenant) == 1


@pytest.fixture
def loop() -> Iterator[BackgroundLoop]:
    background = BackgroundLoop("relay-test")
    yield background
    background.stop()


async def test_the_event_a_writer_could_not_publish_is_relayed(
    servers: Servers, own_database: str, settings: Settings, loop: BackgroundLoop
) -> None:
    tenant = new_tenant()
    [job], mark = await created(servers.engine, tenant)
    await announce(servers.log, [job], mark)
    async with servers.engine.begin() as conn:  # claimed: as the writer would have
        await conn.execute(update(Job).where(Job.id == job.id).values(status="RUNNING", attempts=1))

    async def redis_is_down(committed: list[Committed]) -> None:
        raise ConnectionError("Redis is not reachable")

    worker = msgspec.structs.replace(settings, database_url=own_database)
    writer = start_writer(loop, worker, redis_is_down, batch_size=10, tick_ms=0)
    outcome = Outcome(job.id, JobStatus.COMPLETED, result={"value": 1})
    assert await asyncio.to_thread(writer.finish, outcome) == JobStatus.COMPLETED
    await asyncio.to_thread(writer.settle, 10)
    # Committed, with its outbox row, but never announced.
    rows = await outbox_rows(servers.engine)
    assert rows.pop(mark) == [job.id]  # the creation's: announced, not yet relayed
    assert list(rows.values()) == [[job.id]]
    assert told(await stream(servers.log, tenant)) == [(1, "JOB_UPDATE", str(job.id), "PENDING")]

    await past_grace()
    relay = outbox.Relay(servers.engine, servers.log, GRACE_MS)
    assert await relay.relay() == 1
    entries = await stream(servers.log, tenant)
    assert told(entries) == [
        (1, "JOB_UPDATE", str(job.id), "PENDING"),
        (2, "JOB_UPDATE", str(job.id), "COMPLETED"),
    ]
    assert entries[1]["attempts"] == 1
    assert await outbox_rows(servers.engine) == {}
    assert await relay.relay() == 0
    assert await servers.log.current(tenant) == 2


async def test_a_change_whose_events_were_appended_is_not_appended_again(
    servers: Servers,
) -> None:
    tenant = new_tenant()
    [job], mark = await created(servers.engine, tenant)
    await announce(servers.log, [job], mark)
    await past_grace()

    relay = outbox.Relay(servers.engine, servers.log, GRACE_MS)
    assert await relay.relay() == 0
    assert relay.relayed == 0
    assert told(await stream(servers.log, tenant)) == [(1, "JOB_UPDATE", str(job.id), "PENDING")]
    assert await outbox_rows(servers.engine) == {}


class StaleLog(RedisEventLog):
    """A log whose `appended` answers as of just before the committer's append: the relay
    and the committer both go on to append the same change."""

    async def appended(self, marks: Sequence[uuid.UUID]) -> list[bool]:
        return [False] * len(marks)


async def test_a_relay_racing_the_committer_appends_nothing_twice(servers: Servers) -> None:
    tenant = new_tenant()
    [job], mark = await created(servers.engine, tenant)
    await announce(servers.log, [job], mark)
    await past_grace()

    stale = StaleLog(servers.log.client, servers.log.prefix.removesuffix(":events"), retain=1000)
    assert stale.prefix == servers.log.prefix
    await outbox.Relay(servers.engine, stale, GRACE_MS).relay()
    # The append of a mark is skipped once the mark is set, whoever comes second.
    assert told(await stream(servers.log, tenant)) == [(1, "JOB_UPDATE", str(job.id), "PENDING")]
    assert await outbox_rows(servers.engine) == {}


async def feed(log: RedisEventLog, tenant: str) -> list[FeedItem]:
    """What a subscriber that has seen nothing yet gets from the tenant's log."""

    async def nothing_live() -> AsyncIterator[bytes]:
        return
        yield  # an async generator that ends at once

    return [item async for item in follow(log, tenant, nothing_live(), after=0)]


async def test_a_job_changed_since_gets_its_tenant_a_resync_not_its_stale_event(
    servers: Servers,
) -> None:
    quiet, busy = new_tenant(), new_tenant()
    # One statement created a job of each tenant; its committer appended nothing.
    [still, moved], created_mark = await created(servers.engine, quiet, busy)
    # Then one of them was claimed, and that change was committed and announced.
    claimed_at = utcnow()
    async with servers.engine.begin() as conn:
        await conn.execute(
            update(Job)
            .where(Job.id == moved.id)
            .values(status="RUNNING", attempts=1, updated_at=claimed_at)
        )
        claimed_mark = await outbox.add(conn, [moved.id], claimed_at)
    assert claimed_mark is not None
    claimed = JobEvent(busy, moved.id, "RUNNING", 1, None, claimed_at)
    await servers.log.append([Committed([claimed], claimed_mark)])
    await past_grace()

    relay = outbox.Relay(servers.engine, servers.log, GRACE_MS)
    assert await relay.relay() == 1  # the creation; the claim was appended by its committer
    # The job still as the creation left it gets its event.
    assert told(await stream(servers.log, quiet)) == [(1, "JOB_UPDATE", str(still.id), "PENDING")]
    # The one that moved on must not get PENDING after RUNNING: its tenant re-reads.
    assert told(await stream(servers.log, busy)) == [
        (1, "JOB_UPDATE", str(moved.id), "RUNNING"),
        (2, "RESYNC", None, ""),
    ]
    assert await outbox_rows(servers.engine) == {}
    assert await servers.log.appended([created_mark]) == [True]
    busy_feed = await feed(servers.log, busy)
    assert [type(item) for item in busy_feed] == [bytes, Resync]
    assert busy_feed[1] == Resync(busy, 2)
    assert not any(isinstance(item, Resync) for item in await feed(servers.log, quiet))


async def backdate(engine: AsyncEngine, mark: uuid.UUID, at: datetime) -> None:
    """Make a row (and its jobs, which it left as they are) look as old as `at`."""
    async with engine.begin() as conn:
        [job_ids] = (
            await conn.execute(
                update(JobEventOutbox)
                .where(JobEventOutbox.id == mark)
                .values(at=at)
                .returning(JobEventOutbox.job_ids)
            )
        ).one()
        await conn.execute(update(Job).where(Job.id.in_(job_ids)).values(updated_at=at))


async def test_rows_younger_than_the_grace_are_left_to_their_committer(
    servers: Servers,
) -> None:
    tenant = new_tenant()
    [young], young_mark = await created(servers.engine, tenant)
    [old], old_mark = await created(servers.engine, tenant)
    await backdate(servers.engine, old_mark, utcnow() - timedelta(minutes=2))

    relay = outbox.Relay(servers.engine, servers.log, grace_ms=60_000)
    assert await relay.relay() == 1
    assert told(await stream(servers.log, tenant)) == [(1, "JOB_UPDATE", str(old.id), "PENDING")]
    assert await outbox_rows(servers.engine) == {young_mark: [young.id]}
    assert await servers.log.appended([young_mark]) == [False]
    # Its committer appends it meanwhile; once its grace is over, the row just goes.
    await announce(servers.log, [young], young_mark)
    await backdate(servers.engine, young_mark, utcnow() - timedelta(minutes=2))
    assert await relay.relay() == 0
    assert await outbox_rows(servers.engine) == {}
    assert [entry["jobId"] for entry in await stream(servers.log, tenant)] == [
        str(old.id),
        str(young.id),
    ]
