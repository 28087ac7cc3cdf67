"""The recovery pass's search for PENDING jobs no queue holds, on PostgreSQL and SQLite:
each pass reads a window of the overdue jobs and the next pass reads on, so a lost
job is found behind any backlog (messages waiting in the queue, or a paused tenant's
held jobs), and a held job is never sent. Each test has a database of its own: the
pass reads every tenant's overdue jobs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.engine import create_engine
from ferry.db.models import Job, Pause, utcnow
from ferry.migrate import upgrade
from ferry.queue.messages import JOBS_QUEUE, job_message
from ferry.settings import Settings
from ferry.worker import recovery
from ferry.worker.recovery import Recovery
from tests.support.services import migrated_database


@pytest.fixture(params=["postgresql", "sqlite"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    stack = ExitStack()
    try:
        if request.param == "postgresql":
            url = await asyncio.to_thread(stack.enter_context, migrated_database())
        else:
            url = f"sqlite+aiosqlite:///{tmp_path / 'ferry.db'}"
            await asyncio.to_thread(upgrade, url)  # alembic runs its own event loop
        engine = create_engine(Settings(database_url=url))
        yield engine
        await engine.dispose()
    finally:
        await asyncio.to_thread(stack.close)


async def add_overdue(
    db: AsyncEngine, tenant: str, n: int, since_s: int, apart_s: int = 1
) -> list[uuid.UUID]:
    """`n` PENDING jobs of `tenant`, due `apart_s` apart from `since_s` seconds ago."""
    ids = [uuid.uuid4() for _ in range(n)]
    start = utcnow() - timedelta(seconds=since_s)
    rows = [
        {
            "id": job_id,
            "tenant_id": tenant,
            "type": "sleep",
            "payload": {"delayMs": 0},
            "max_attempts": 1,
            "status": "PENDING",
            "next_run_at": start + timedelta(seconds=i * apart_s),
        }
        for i, job_id in enumerate(ids)
    ]
    async with db.begin() as conn:
        await conn.execute(insert(Job), rows)
    return ids


@pytest.fixture(autouse=True)
def small_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery, "SCAN_LIMIT", 4)


@pytest.fixture
def broker() -> StubBroker:
    stub = StubBroker()
    stub.declare_queue(JOBS_QUEUE)
    return stub


async def pause(db: AsyncEngine, tenant: str) -> None:
    async with db.begin() as conn:
        await conn.execute(insert(Pause).values(tenant_id=tenant, job_type="", paused_at=utcnow()))


def sent(broker: StubBroker) -> list[str]:
    """The job ids of the messages in the queue, in order."""
    return [Message.decode(data).args[0] for data in list(broker.queues[JOBS_QUEUE].queue)]


async def test_a_lost_job_behind_a_backlog_longer_than_a_window_is_found(
    db: AsyncEngine, broker: StubBroker, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery, "WINDOWS_PER_PASS", 1)
    # Oldest first: a paused tenant's held jobs, jobs whose messages wait in the
    # queue, then the lost one; two windows of four hold them all.
    held = await add_overdue(db, "paused", 3, since_s=600)
    queued = await add_overdue(db, "busy", 4, since_s=500)
    [lost] = await add_overdue(db, "busy", 1, since_s=400)
    await pause(db, "paused")
    for job_id in queued:
        broker.enqueue(job_message(str(job_id), "sleep", "busy"))
    waiting = sent(broker)
    scan = Recovery(lambda: db, broker, settings)

    await scan.resend_lost()  # held x 3, queued x 1
    assert sent(broker) == waiting
    await scan.resend_lost()  # queued x 3, the lost one: the end, so the next starts over
    assert sent(broker) == [*waiting, str(lost)]
    for _ in range(2):  # round again: the held ones are never sent
        await scan.resend_lost()
    assert not {str(job_id) for job_id in held} & set(sent(broker))
    assert scan.resent == 1


async def test_a_pass_reads_on_past_held_jobs_for_a_few_windows(
    db: AsyncEngine, broker: StubBroker, settings: Settings
) -> None:
    await add_overdue(db, "paused", 4 * (recovery.WINDOWS_PER_PASS - 1) + 3, since_s=600)
    [lost] = await add_overdue(db, "other", 1, since_s=300)
    await pause(db, "paused")
    await Recovery(lambda: db, broker, settings).resend_lost()
    assert sent(broker) == [str(lost)]  # in the pass's last window


async def test_windows_within_jobs_due_at_the_same_time_miss_none(
    db: AsyncEngine, broker: StubBroker, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch shares one due time: the windows go on by id among them."""
    monkeypatch.setattr(recovery, "WINDOWS_PER_PASS", 1)
    batch = await add_overdue(db, "batch", 11, since_s=600, apart_s=0)
    lost = set(map(str, batch[1::3]))  # whatever their order by id
    for job_id in map(str, batch):
        if job_id not in lost:
            broker.enqueue(job_message(job_id, "sleep", "batch"))
    scan = Recovery(lambda: db, broker, settings)
    for _ in range(3):  # windows of 4, 4 and 3: the whole batch once
        await scan.resend_lost()
    resent = sent(broker)[len(batch) - len(lost) :]
    assert sorted(resent) == sorted(lost)  # each lost job once, none missed


async def test_a_pass_takes_no_more_than_it_sends_and_the_next_goes_on_from_there(
    db: AsyncEngine, broker: StubBroker, settings: Settings
) -> None:
    await add_overdue(db, "paused", 1, since_s=600)
    lost = await add_overdue(db, "other", 8, since_s=500)
    await pause(db, "paused")
    scan = Recovery(lambda: db, broker, settings)
    await scan.resend_lost()  # 4 of the lost: a window of 4 (one held), then one of 1
    assert sent(broker) == list(map(str, lost[:4]))
    await scan.resend_lost()  # on from there: the other 4
    assert sent(broker) == list(map(str, lost))
