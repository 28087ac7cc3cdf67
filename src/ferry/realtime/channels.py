"""Litestar's channels plugin, carrying events from the event log to API processes.

Redis pub/sub when Ferry runs on Redis, in memory on the embedded default:
the handlers and feeds are the same either way. Subscriber backlogs are capped
and drop their oldest events when full (`ferry.realtime.feed` reads them back),
so a slow client can neither stall the others nor grow memory without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import redis.asyncio as aioredis
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.channels.subscriber import Subscriber
from redis.exceptions import RedisError

from ferry.settings import Settings

log = logging.getLogger(__name__)


class ReconnectingPubSubBackend(RedisChannelsPubSubBackend):
    """Pub/sub that connects before it subscribes and outlives a lost Redis connection.

    The plugin reads `stream_events` in a single task; if it raised, the process
    would stop receiving events for good. redis-py reconnects and re-subscribes
    on the next read; what was published meanwhile shows up as a seq gap, which
    the feeds read back from the event log."""

    async def on_startup(self) -> None:
        # Connect before the first subscriptions: redis-py's PubSub.connect is not
        # guarded, so concurrent first SUBSCRIBEs would each open a connection,
        # and every one but the last would be subscribed on a connection no one reads.
        await self._pub_sub.connect()  # type: ignore[no-untyped-call]

    async def stream_events(self) -> AsyncGenerator[tuple[str, Any], None]:
        while True:
            try:
                async for item in super().stream_events():
                    yield item
            except (RedisError, OSError) as exc:
                log.warning("event subscription lost (%s); reconnecting", exc)
                await asyncio.sleep(0.5)


def build_channels(settings: Settings, client: aioredis.Redis | None) -> ChannelsPlugin:
    backend: ChannelsBackend = (
        MemoryChannelsBackend() if client is None else ReconnectingPubSubBackend(redis=client)
    )
    return ChannelsPlugin(
        backend=backend,
        arbitrary_channels_allowed=True,
        create_ws_route_handlers=False,
        subscriber_max_backlog=settings.event_backlog,
        subscriber_backlog_strategy="dropleft",
    )


@asynccontextmanager
async def subscription(channels: ChannelsPlugin, channel: str) -> AsyncIterator[Subscriber]:
    """Like `ChannelsPlugin.start_subscription`, but the unsubscribe survives the
    cancellation that ends a stream whose client went away (litestar issue 3772)."""
    subscriber = await channels.subscribe(channel)
    try:
        yield subscriber
    finally:
        with anyio.CancelScope(shield=True):
            await channels.unsubscribe(subscriber, channel)
