"""PROGRESS events in both event logs (real Redis, and the embedded one): published on the
tenant's channel with a seq of their own and the JOB_UPDATE seq they follow, kept nowhere,
and leaving no hole in the JOB_UPDATEs' seq."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import msgspec
import pytest
import redis.asyncio as aioredis

from ferry.db.models import utcnow
from ferry.events.event import (
    JobEvent,
    ProgressEvent,
    channel_name,
    events_in,
    progress_after,
    progress_event,
    seq_of,
)
from ferry.events.log import Committed, EventLog, MemoryEventLog
from ferry.events.redis_log import RedisEventLog
from tests.support.services import TEST_REDIS_URL

TENANT = "tenant-progress"


def update(tenant: str = TENANT) -> JobEvent:
    return JobEvent(tenant, uuid.uuid4(), "RUNNING", 1, None, utcnow())


def progress(fraction: float, tenant: str = TENANT) -> ProgressEvent:
    return progress_event(tenant, uuid.uuid4(), fraction, f"at {fraction}", utcnow())


@dataclass
class Logged:
    log: EventLog
    published: Callable[[int], Awaitable[list[bytes]]]  # the next n published on TENANT


@pytest.fixture(params=["redis", "memory"])
async def logged(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Logged]:
    prefix = f"{namespace}-progress-{uuid.uuid4().hex[:8]}"
    channel = channel_name(prefix, TENANT)
    if request.param == "memory":
        seen: list[bytes] = []

        def deliver(to: str, data: bytes) -> None:
            if to == channel:
                seen.extend(events_in(data))

        async def delivered(count: int) -> list[bytes]:
            assert len(seen) >= count, seen
            taken, seen[:] = seen[:count], seen[count:]
            return taken

        yield Logged(MemoryEventLog(prefix, deliver, retain=100), delivered)
        return
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    async with asyncio.timeout(10):  # subscribed before anything is published
        while (await pubsub.get_message(timeout=1) or {}).get("type") != "subscribe":
            pass

    async def received(count: int) -> list[bytes]:
        out: list[bytes] = []
        async with asyncio.timeout(10):
            while len(out) < count:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    out += events_in(message["data"])
        return out

    yield Logged(RedisEventLog(client, prefix, retain=100), received)
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_progress_is_published_with_its_own_seq_after_the_updates_before_it(
    logged: Logged,
) -> None:
    log = logged.log
    halfway = progress(0.5)
    await log.append([Committed([progress(0.1)]), Committed([update(), update()])])
    await log.append(
        [Committed([halfway, progress(0.2, "other"), progress(0.75)]), Committed([update()])]
    )
    published = await logged.published(6)  # the other tenant's is on its own channel
    assert [(seq_of(data), progress_after(data)) for data in published] == [
        (1, 0), (1, None), (2, None), (2, 2), (3, 2), (3, None),
    ]  # fmt: skip
    assert msgspec.json.decode(published[3]) == {
        "seq": 2,
        "type": "PROGRESS",
        "after": 2,
        "tenantId": TENANT,
        "jobId": str(halfway.job_id),
        "progress": 0.5,
        "message": "at 0.5",
        "at": halfway.at.isoformat().replace("+00:00", "Z"),
    }


async def test_progress_leaves_no_hole_in_seq_and_nothing_in_the_history(
    logged: Logged,
) -> None:
    log = logged.log
    await log.append([Committed([update()]), Committed([progress(0.3)] * 5)])
    await log.append([Committed([update()])])
    assert await log.current(TENANT) == 2
    history = await log.read(TENANT, 0, 100)
    assert history is not None
    assert [(seq_of(data), progress_after(data)) for data in history] == [(1, None), (2, None)]
    await logged.published(7)


async def test_progress_in_a_change_appended_before_is_not_published_again(
    logged: Logged,
) -> None:
    """Progress (no mark) appended with a marked change leaves the mark's rule intact: the
    change, relayed again, is skipped."""
    log = logged.log
    mark = uuid.uuid4()
    change = Committed([update()], mark)
    await log.append([Committed([progress(0.4)]), change])
    await log.append([change])  # the recovery pass relays it again: skipped
    assert [seq_of(data) for data in await logged.published(2)] == [1, 1]
    assert await log.current(TENANT) == 1


async def test_progress_follows_the_updates_of_its_own_append(logged: Logged) -> None:
    """In one append, each progress event comes after the updates before it there."""
    log = logged.log
    await log.append([Committed([update(), progress(0.3), update(), progress(0.6)])])
    published = await logged.published(4)
    assert [(seq_of(data), progress_after(data)) for data in published] == [
        (1, None), (1, 1), (2, None), (2, 2),
    ]  # fmt: skip
