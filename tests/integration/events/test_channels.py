"""The channels plugin on real Redis pub/sub, as the API processes use it."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from ferry.events.channels import build_channels
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
