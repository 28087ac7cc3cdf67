"""Both event logs keep the same contract: the Redis one (real Redis) and the embedded one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest
import redis.asyncio as aioredis

from ferry.db.models import utcnow
from ferry.events.event import JobEvent, channel_name, events_in, seq_of
from ferry.events.log import Committed, EventLog, MemoryEventLog
from ferry.events.redis_log import RedisEventLog
from tests.support.services import TEST_REDIS_URL

TENANT = "tenant-log"
MakeLog = Callable[..., EventLog]


def events(count: int, tenant: str = TENANT) -> list[JobEvent]:
    return [JobEvent(tenant, uuid.uuid4(), "PENDING", 0, None, utcnow()) for _ in range(count)]


@pytest.fixture(params=["redis", "memory"])
async def make_log(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[MakeLog]:
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    prefix = f"{namespace}-log-{uuid.uuid4().hex[:8]}"

    def make(retain: int = 10_000, ttl_s: int = 0) -> EventLog:
        if request.param == "redis":
            return RedisEventLog(client, prefix, retain=retain, ttl_s=ttl_s)
        return MemoryEventLog(prefix, lambda channel, data: None, retain=retain)

    yield make
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_seq_counts_each_tenant_from_one(make_log: MakeLog) -> None:
    log = make_log()
    await log.append([Committed(events(3) + events(2, "other") + events(1))])
    assert (await log.current(TENANT), await log.current("other"), await log.current("x")) == (
        4,
        2,
        0,
    )
    read = await log.read(TENANT, 0, 100)
    assert read is not None
    assert [seq_of(data) for data in read] == [1, 2, 3, 4]
    decoded = msgspec.json.decode(read[0])
    assert decoded["seq"] == 1 and decoded["tenantId"] == TENANT and decoded["type"] == "JOB_UPDATE"


async def test_read_pages_from_any_point(make_log: MakeLog) -> None:
    log = make_log()
    await log.append([Committed(events(10))])
    page = await log.read(TENANT, 3, 4)
    assert page is not None and [seq_of(data) for data in page] == [4, 5, 6, 7]
    assert await log.read(TENANT, 10, 4) == []


async def test_read_past_the_counter_or_the_history_is_none(make_log: MakeLog) -> None:
    log = make_log(retain=10)
    # Redis trims approximately (whole stream nodes of 100): go well past that.
    await log.append([Committed(events(400))])
    assert await log.read(TENANT, 0, 10) is None
    recent = await log.read(TENANT, 395, 10)
    assert recent is not None and [seq_of(data) for data in recent] == [396, 397, 398, 399, 400]
    assert await log.read(TENANT, 401, 10) is None  # a seq this log never gave


async def test_redis_history_of_an_idle_tenant_expires_but_its_seq_stays(namespace: str) -> None:
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    prefix = f"{namespace}-ttl"
    try:
        log = RedisEventLog(client, prefix, retain=100, ttl_s=60)
        await log.append([Committed(events(2))])
        stream = f"{prefix}:events:stream:{TENANT}"
        assert 0 < await client.ttl(stream) <= 60
        await client.delete(stream)  # as if it had expired
        assert await log.read(TENANT, 1, 10) is None
        await log.append([Committed(events(1))])
        assert await log.current(TENANT) == 3
        again = await log.read(TENANT, 2, 10)
        assert again is not None and [seq_of(data) for data in again] == [3]
    finally:
        await client.delete(*[key async for key in client.scan_iter(match=f"{prefix}*")])
        await client.aclose()


async def test_redis_log_recovers_a_stream_that_outlived_its_counter(namespace: str) -> None:
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    prefix = f"{namespace}-stale"
    try:
        log = RedisEventLog(client, prefix, retain=100)
        await log.append([Committed(events(5))])
        await client.delete(f"{prefix}:events:seq:{TENANT}")
        await log.append([Committed(events(2))])  # seqs 1 and 2 again: the stale history goes
        fresh = await log.read(TENANT, 0, 10)
        assert fresh is not None and [seq_of(data) for data in fresh] == [1, 2]
    finally:
        await client.delete(*[key async for key in client.scan_iter(match=f"{prefix}*")])
        await client.aclose()


async def test_a_change_appended_before_takes_no_seq_beside_new_ones(make_log: MakeLog) -> None:
    """A relayed change (its mark set) is skipped within a call that appends others:
    the others are numbered on, in order, with no hole."""
    log = make_log()
    first, again, fresh, last = events(2), events(1), events(2) + events(1, "other"), events(1)
    marked = uuid.uuid4()
    await log.append([Committed(first, marked)])
    await log.append([Committed(again, marked), Committed(fresh), Committed(last, uuid.uuid4())])
    read = await log.read(TENANT, 0, 100)
    assert read is not None
    assert [seq_of(data) for data in read] == [1, 2, 3, 4, 5]
    job_ids = [msgspec.json.decode(data)["jobId"] for data in read]
    expected = [*first, *fresh[:2], *last]
    assert job_ids == [str(event.job_id) for event in expected]
    assert await log.current("other") == 1


@pytest.mark.parametrize(("per_message", "sizes"), [(500, [5]), (2, [2, 2, 1]), (1, [1] * 5)])
async def test_redis_log_publishes_a_tenants_events_together(
    namespace: str, per_message: int, sizes: list[int]
) -> None:
    """One append publishes each tenant's events in messages of up to `per_message`,
    in seq order (1: one event a message, what API processes of earlier releases read)."""
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    prefix = f"{namespace}-publish"
    pubsub = client.pubsub()
    try:
        channels = [channel_name(prefix, tenant) for tenant in (TENANT, "other")]
        await pubsub.subscribe(*channels)
        confirmed = 0
        async with asyncio.timeout(10):  # subscribed to both before anything is published
            while confirmed < len(channels):
                message = await pubsub.get_message(timeout=1)
                confirmed += message is not None and message["type"] == "subscribe"
        log = RedisEventLog(client, prefix, retain=100, per_message=per_message)
        await log.append([Committed(events(3) + events(1, "other")), Committed(events(2))])
        messages: dict[str, list[list[int]]] = {channel: [] for channel in channels}
        async with asyncio.timeout(10):
            while sum(map(len, messages.values())) < len(sizes) + 1:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    seqs = [seq_of(event) for event in events_in(message["data"])]
                    messages[message["channel"].decode()].append(seqs)
        assert [len(seqs) for seqs in messages[channels[0]]] == sizes
        assert [seq for seqs in messages[channels[0]] for seq in seqs] == [1, 2, 3, 4, 5]
        assert messages[channels[1]] == [[1]]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.delete(*[key async for key in client.scan_iter(match=f"{prefix}*")])
        await client.aclose()
