"""Litestar's channels plugin, carrying events from the event log to API processes.

Redis pub/sub when Ferry runs on Redis, in memory on the embedded default:
the handlers and feeds are the same either way. Subscriber backlogs are capped
and drop their oldest events when full (`ferry.events.feed` reads them back),
so a slow client can neither stall the others nor grow memory without bound; one
that stops reading is cut (`ferry.sockets.live`), which drops its backlog at once.

A published message holds one or more of a tenant's events (`published` in
`ferry.events.event`): the backends hand them on one at a time, so a subscriber's
backlog counts events.

The events are handed on a burst at a time (`breathing`): the plugin's reader
never waits while events are buffered already (a batch of creates publishes its
PENDING events at once, and one socket read brings hundreds), so without a
pause it would fill every backlog before a subscriber's socket sent anything,
and a subscriber that keeps up would lose the oldest to a read-back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import aclosing, asynccontextmanager
from typing import Any, TypeVar, cast

import anyio
import redis.asyncio as aioredis
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.channels.subscriber import Subscriber
from redis.exceptions import RedisError

from ferry.events.event import RECONNECTED, events_in
from ferry.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# Events handed to the subscribers' backlogs between two turns of the event loop.
BURST = 64


def burst_for(backlog: int) -> int:
    """At most half a backlog (of none: no cap), so that each subscriber's socket gets
    a turn before its backlog could fill."""
    return BURST if backlog <= 0 else max(1, min(BURST, backlog // 2))


async def breathing(events: AsyncGenerator[T, None], burst: int) -> AsyncGenerator[T, None]:
    """`events`, with a turn of the event loop after every `burst` of them."""
    handed = 0
    async with aclosing(events):
        async for event in events:
            yield event
            handed += 1
            if handed % burst == 0:
                await asyncio.sleep(0)


class ReconnectingPubSubBackend(RedisChannelsPubSubBackend):
    """Pub/sub that subscribes safely and tells its subscribers when its
    connection came back.

    The plugin reads `stream_events` in a single task: if it raised, the process
    would stop receiving events for good, so errors are waited out here. redis-py
    reconnects (and re-subscribes every channel) on the next read, silently when
    its retries succeed; a connect callback notices, and every subscriber gets
    `RECONNECTED`, so that its feed reads back what was published meanwhile."""

    def __init__(self, *, redis: aioredis.Redis, burst: int = BURST) -> None:
        super().__init__(redis=redis)
        self.burst = burst
        self._subscribing = asyncio.Lock()
        self._watched: Any = None  # the connection whose reconnects are watched
        self._reconnected = False

    async def subscribe(self, channels: Iterable[str]) -> None:
        # One at a time: redis-py's PubSub.connect is not guarded, so concurrent
        # first SUBSCRIBEs would each open a connection, and every one but the
        # last would be subscribed on a connection no one reads.
        async with self._subscribing:
            await super().subscribe(channels)
            connection = self._pub_sub.connection
            if connection is not None and connection is not self._watched:
                connection.register_connect_callback(self._on_reconnect)
                self._watched = connection

    async def _on_reconnect(self, connection: Any) -> None:
        self._reconnected = True

    def stream_events(self) -> AsyncGenerator[tuple[str, Any], None]:
        return breathing(self._events(), self.burst)

    async def _events(self) -> AsyncGenerator[tuple[str, Any], None]:
        # The parent's loop, with the errors caught and the reconnects announced.
        pubsub = self._pub_sub
        while True:
            await self._has_subscribed.wait()
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            except (RedisError, OSError) as exc:
                log.warning("event subscription lost (%s); reconnecting", exc)
                await asyncio.sleep(0.5)
                continue
            if self._reconnected:
                self._reconnected = False
                log.warning("event subscription restored")
                for channel in list(pubsub.channels):
                    yield channel.decode(), RECONNECTED
            if message is None or message["type"] != "message":
                continue
            channel = message["channel"]
            # Unsubscribing takes a round trip: drop what a channel left behind. Two
            # lookups, not a set difference: an API process holds a channel per tenant.
            if channel in pubsub.channels and channel not in pubsub.pending_unsubscribe_channels:
                name = channel.decode()
                for event in events_in(message["data"]):
                    yield name, event


class MemoryBackend(MemoryChannelsBackend):
    """The in-process channels of the embedded default, handed on a burst at a time."""

    def __init__(self, burst: int = BURST) -> None:
        super().__init__()
        self.burst = burst

    def stream_events(self) -> AsyncGenerator[tuple[str, Any], None]:
        return breathing(self._events(), self.burst)

    async def _events(self) -> AsyncGenerator[tuple[str, Any], None]:
        async with aclosing(super().stream_events()) as messages:
            async for channel, message in messages:
                for event in events_in(message):
                    yield channel, event


class LiveSubscriber(Subscriber):
    """A subscriber whose backlog can be dropped at once."""

    def discard(self) -> None:
        """Drop the events waiting here and end the stream: a cut subscriber holds no
        memory while its last write waits, and gets nothing more."""
        queue = self._queue
        while not queue.empty():
            queue.get_nowait()
            queue.task_done()
        queue.put_nowait(None)


def build_channels(settings: Settings, client: aioredis.Redis | None) -> ChannelsPlugin:
    burst = burst_for(settings.event_backlog)
    backend: ChannelsBackend = (
        MemoryBackend(burst)
        if client is None
        else ReconnectingPubSubBackend(redis=client, burst=burst)
    )
    return ChannelsPlugin(
        backend=backend,
        arbitrary_channels_allowed=True,
        create_ws_route_handlers=False,
        subscriber_max_backlog=settings.event_backlog,
        subscriber_backlog_strategy="dropleft",
        subscriber_class=LiveSubscriber,
    )


@asynccontextmanager
async def subscription(channels: ChannelsPlugin, channel: str) -> AsyncIterator[LiveSubscriber]:
    """Like `ChannelsPlugin.start_subscription`, but the unsubscribe survives the
    cancellation that ends a stream whose client went away (litestar issue 3772)."""
    subscriber = cast(LiveSubscriber, await channels.subscribe(channel))
    try:
        yield subscriber
    finally:
        with anyio.CancelScope(shield=True):
            await channels.unsubscribe(subscriber, channel)


async def cut_off(channels: ChannelsPlugin, subscriber: LiveSubscriber, channel: str) -> None:
    """Unsubscribe and drop the subscriber's backlog: its stream ends at once."""
    with anyio.CancelScope(shield=True):
        await channels.unsubscribe(subscriber, channel)
    subscriber.discard()
