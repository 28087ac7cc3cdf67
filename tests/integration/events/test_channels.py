"""The channels plugin on real Redis pub/sub, as the API processes use it."""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
import pytest
import redis.asyncio as aioredis

from ferry.events.channels import build_channels
from ferry.events.event import published
from ferry.settings import Settings
from tests.support.services import TEST_REDIS_URL


async def test_concurrent_first_subscriptions_all_receive(settings: Settings) -> None:
    """A fresh API process whose first 50 subscribers arrive at once: each must be
    subscribed on the one connection that is read (redis-py would open several)."""
    subscriber_client = aioredis.Redis.from_url(TEST_REDIS_URL)
    publisher = aioredis.Redis.from_url(TEST_REDIS_URL)
    channels = build_channels(settings, subscriber_client)
    names = [f"{settings.redis_namespace}:channels-test:{i}" for i in range(50)]
    try:
        async with channels:
            subscribers = await asyncio.gather(*[channels.subscribe(name) for name in names])
            for name in names:
                await publisher.publish(name, name.encode())
            received = await asyncio.wait_for(
                asyncio.gather(*[anext(s.iter_events()) for s in subscribers]), 10
            )
            assert received == [name.encode() for name in names]
            for subscriber in subscribers:
                await channels.unsubscribe(subscriber)
    finally:
        await subscriber_client.aclose()
        await publisher.aclose()


@pytest.mark.parametrize("per_message", [1, 1000])
@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_a_burst_reaches_a_subscriber_that_keeps_up(
    settings: Settings, backend: str, per_message: int
) -> None:
    """A batch's events are published at once, and a socket read (or one message)
    brings hundreds: a subscriber that reads all the while gets every one, in order,
    though the burst is 25 times its backlog (handed on all at once, all but the last
    few tens were dropped)."""
    settings = msgspec.structs.replace(settings, event_backlog=40)
    subscriber_client = aioredis.Redis.from_url(TEST_REDIS_URL) if backend == "redis" else None
    publisher = aioredis.Redis.from_url(TEST_REDIS_URL)
    channels = build_channels(settings, subscriber_client)
    channel = f"{settings.redis_namespace}:channels-test:burst"
    sent = [f"event {i}".encode() for i in range(1000)]
    received: list[bytes] = []
    try:
        async with channels:
            subscriber = await channels.subscribe(channel)

            async def read() -> None:
                async for event in subscriber.iter_events():
                    received.append(event)
                    if len(received) == len(sent):
                        return

            reader = asyncio.create_task(read())
            messages = [
                published(sent[start : start + per_message])
                for start in range(0, len(sent), per_message)
            ]
            if backend == "redis":
                async with publisher.pipeline(transaction=False) as pipe:
                    for message in messages:
                        pipe.publish(channel, message)
                    await pipe.execute()
            else:
                for message in messages:
                    channels.publish(message, channel)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, 5)
            assert received == sent, f"{len(received)} of {len(sent)} received"
            await channels.unsubscribe(subscriber)
    finally:
        if subscriber_client is not None:
            await subscriber_client.aclose()
        await publisher.aclose()
