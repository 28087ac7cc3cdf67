"""Live job events: WebSocket `/ws` (the seeds' protocol) and Server-Sent Events `/events`.

Both follow one tenant per subscription through `ferry.events.feed.follow`,
so they deliver the same events in the same order: WebSocket for clients that
can hold a socket, SSE for those behind proxies that cannot (and for resuming
with `Last-Event-ID` after a disconnect).

A subscriber that stops reading is cut (`WriteWatch`): its WebSocket is closed
with 1013, its event stream ended, so that it costs the others nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypeVar

import anyio
import msgspec
from litestar import Request, WebSocket, get, websocket
from litestar.channels import ChannelsPlugin
from litestar.channels.subscriber import Subscriber
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.status_codes import WS_1008_POLICY_VIOLATION, WS_1013_TRY_AGAIN_LATER

from ferry.api.answers import TENANT_CHECKED
from ferry.api.auth import WS_SUBPROTOCOL, principal_of
from ferry.api.dependencies import AppRuntime, Runtime, runtime_of
from ferry.events.channels import LiveSubscriber, cut_off, subscription
from ferry.events.event import channel_name, progress_after, seq_of
from ferry.events.feed import FeedItem, Resync, follow
from ferry.events.log import EventLog
from ferry.fields import TENANT_ID_PATTERN, TenantId, in_words
from ferry.observability.metrics import recorder
from ferry.service.schemas import MAX_SEQ
from ferry.settings import Settings
from ferry.sockets.outbox import Outbox, lines

log = logging.getLogger(__name__)


class Subscribe(msgspec.Struct, tag="SUBSCRIBE", tag_field="type", rename="camel"):
    tenant_id: TenantId


class Unsubscribe(msgspec.Struct, tag="UNSUBSCRIBE", tag_field="type", rename="camel"):
    tenant_id: TenantId


_decode_request = msgspec.json.Decoder(Subscribe | Unsubscribe).decode
_encode = msgspec.json.Encoder().encode


def describe_bad_message(exc: Exception) -> str:
    if not isinstance(exc, msgspec.ValidationError):
        return "messages must be JSON objects"
    text = str(exc)
    if "`$.type`" in text or "missing required field `type`" in text:
        return "unknown message type: send SUBSCRIBE or UNSUBSCRIBE with a tenantId"
    return in_words(text.replace("`$.", "`").replace("- at `$`", "").strip())


_BATCH = (
    "true: a frame may carry several messages, one JSON object a line (split each frame"
    " on newlines): fewer frames for a client that follows many events"
)


_BATCH_VALUES = {"true": True, "1": True, "false": False, "0": False}


class Cuttable(Protocol):
    async def cut(self, reason: str) -> None:
        """Drop what waits for this subscriber, send it nothing more but the end."""


class WriteWatch:
    """The writes to live subscribers that wait, and the cut of a subscriber whose
    write has waited longer than `timeout_s` (LIVE_WRITE_TIMEOUT_MS).

    A client that stops reading fills its kernel's receive buffer, then the server's
    send buffer (Linux grows it up to megabytes), then the server's transport (64
    KiB); only then does a write wait. Beyond `timeout_s` the subscriber is cut: its
    backlog is dropped and it is sent nothing more but the end of its stream. A write
    that does not wait completes without yielding to the event loop, so the watch,
    looking a few times per timeout, only ever finds the writes that wait."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._waiting: dict[Cuttable, float] = {}  # subscriber -> when its write began
        self._watcher: asyncio.Task[None] | None = None
        self._cuts: set[asyncio.Task[None]] = set()

    def begin(self, subscriber: Cuttable) -> None:
        self._waiting[subscriber] = time.monotonic()
        if self._watcher is None:  # in a context of its own, not this request's
            self._watcher = asyncio.create_task(self._watch(), context=contextvars.Context())

    def end(self, subscriber: Cuttable) -> None:
        self._waiting.pop(subscriber, None)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.timeout_s / 4)
            began = time.monotonic() - self.timeout_s
            for subscriber in [s for s, since in self._waiting.items() if since < began]:
                del self._waiting[subscriber]
                reason = f"too slow: a write waited {self.timeout_s:g} s; reconnect"
                task = asyncio.create_task(subscriber.cut(reason))
                self._cuts.add(task)
                task.add_done_callback(self._cuts.discard)


def write_watch(state: State) -> WriteWatch:
    """The app's watch (one for all its subscribers)."""
    watch: WriteWatch | None = state.get("live_write_watch")
    if watch is None:
        timeout_ms = runtime_of(state).settings.live_write_timeout_ms
        watch = state.live_write_watch = WriteWatch(timeout_ms / 1000)
    return watch


def count_cut(transport: str, client: str, tenants: list[str], reason: str) -> None:
    recorder.inc("ferry_live_subscribers_cut", transport)
    log.warning(
        "live subscriber cut: %s %s of %s (%s)", transport, client, ", ".join(tenants), reason
    )


def client_of(scope: Any) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "(unknown client)"


@dataclass(frozen=True, slots=True)
class _Following:
    channel: str
    subscriber: Subscriber
    task: asyncio.Task[None]


class LiveSocket:
    """One WebSocket connection: one task per subscribed tenant, one send at a time."""

    def __init__(
        self,
        socket: WebSocket[Any, Any, Any],
        channels: ChannelsPlugin,
        runtime: Runtime,
        *,
        batch: bool = False,
    ) -> None:
        """`batch`: several messages a frame, one a line, written by an outbox."""
        self.socket = socket
        self.principal = principal_of(socket)
        self.channels = channels
        self.events: EventLog = runtime.events
        self.settings: Settings = runtime.settings
        self.feeds: dict[str, _Following] = {}
        self.outbox = Outbox(self._write_lines) if batch else None
        self._sending = asyncio.Lock()  # held while a write goes out
        self.watch = write_watch(socket.app.state)
        self.cut_reason: str | None = None

    async def run(self) -> None:
        await accept(self.socket)
        await self.send({"type": "CONNECTED", "message": "Connected to job updates"})
        try:
            while True:
                message = await self.socket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                await self.handle(message.get("text") or message.get("bytes") or b"")  # type: ignore[arg-type]
        finally:
            with anyio.CancelScope(shield=True):
                await self.stop(list(self.feeds))
                if self.outbox is not None:
                    await self.outbox.close()

    async def handle(self, raw: str | bytes) -> None:
        if self.cut_reason is not None:
            return  # cut: the close is on its way
        try:
            request = _decode_request(raw)
        # Nested past the decoder's depth, or bytes that are not UTF-8: no message either.
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
            await self.send({"type": "ERROR", "message": describe_bad_message(exc)})
            return
        tenant = request.tenant_id
        if isinstance(request, Unsubscribe):
            await self.stop([tenant])
            await self.send({"type": "UNSUBSCRIBED", "tenantId": tenant})
        elif not self.principal.may_act_for(tenant):
            message = f"this key acts for tenant {self.principal.tenant_id} only, not {tenant}"
            await self.send({"type": "ERROR", "message": message})
        elif tenant in self.feeds:
            await self.send({"type": "SUBSCRIBED", "tenantId": tenant})
        elif len(self.feeds) >= self.settings.ws_max_subscriptions:
            limit = self.settings.ws_max_subscriptions
            await self.send({"type": "ERROR", "message": f"at most {limit} subscriptions"})
        else:
            await self.start(tenant)

    async def start(self, tenant: str) -> None:
        channel = channel_name(self.settings.redis_namespace, tenant)
        subscriber = await self.channels.subscribe(channel)
        try:
            # Read after subscribing: every event past `seq` reaches this socket.
            seq = await self.events.current(tenant)
        except Exception as exc:
            await self.channels.unsubscribe(subscriber, channel)
            log.warning("subscription of a socket to %s failed: %s", tenant, exc)
            await self.send({"type": "ERROR", "message": f"subscription to {tenant} failed"})
            return
        await self.send({"type": "SUBSCRIBED", "tenantId": tenant, "seq": seq})
        task = asyncio.create_task(self.forward(tenant, subscriber, seq))
        self.feeds[tenant] = _Following(channel, subscriber, task)
        recorder.gauge("ferry_live_subscribers", "websocket", amount=1)

    async def forward(self, tenant: str, subscriber: Subscriber, seq: int) -> None:
        try:
            async for item in follow(self.events, tenant, subscriber.iter_events(), seq):
                await self.send_item(item)
        except Exception as exc:
            if self.socket.connection_state != "disconnect" and tenant in self.feeds:
                log.warning("subscription of a socket to %s failed: %s", tenant, exc)
                with suppress(Exception):
                    await self.stop([tenant], current=True)
                    message = f"subscription to {tenant} failed"
                    await self.send({"type": "ERROR", "message": message})

    async def stop(self, tenants: list[str], *, current: bool = False) -> None:
        """Unsubscribe, which ends the feeds' streams, then cancel their tasks (a
        cancellation alone can be lost inside a Redis client call; the end of the
        stream cannot). `current`: called from the feed's own task."""
        stopped = [following for tenant in tenants if (following := self.feeds.pop(tenant, None))]
        for following in stopped:
            recorder.gauge("ferry_live_subscribers", "websocket", amount=-1)
            await self.channels.unsubscribe(following.subscriber, following.channel)
            if not current:
                following.task.cancel()
        if not current:
            await asyncio.gather(*(f.task for f in stopped), return_exceptions=True)

    async def send_item(self, item: FeedItem) -> None:
        if isinstance(item, Resync):
            await self.send({"type": "RESYNC", "tenantId": item.tenant_id, "seq": item.seq})
        else:
            await self._send(item)

    async def send(self, message: dict[str, Any]) -> None:
        await self._send(_encode(message))

    async def _send(self, data: bytes) -> None:
        if self.outbox is None:
            await self._write(data)
        elif self.cut_reason is None:
            await self.outbox.put(data)

    async def _write_lines(self, messages: list[bytes]) -> None:
        await self._write(lines(messages))

    async def _write(self, frame: bytes) -> None:
        async with self._sending:
            if self.cut_reason is not None:
                return
            self.watch.begin(self)
            try:
                await self.socket.send_data(frame, mode="text")
            finally:
                self.watch.end(self)

    async def cut(self, reason: str) -> None:
        """Drop what waits, stop every feed (the one whose write waits with them),
        then close with 1013 once what is already written has gone (or the client has)."""
        if self.cut_reason is not None:
            return
        self.cut_reason = reason
        count_cut("websocket", client_of(self.socket.scope), list(self.feeds), reason)
        await self.stop(list(self.feeds))
        if self.outbox is not None:
            await self.outbox.close()  # its write that waits, as a feed's in `stop`
        async with self._sending:  # after a reply being written
            with suppress(Exception):  # the client went away meanwhile
                await self.socket.close(WS_1013_TRY_AGAIN_LATER, reason)


async def accept(socket: WebSocket[Any, Any, Any]) -> None:
    """Accept, with Ferry's subprotocol when the client offered it (a browser that
    sends its key as a subprotocol fails a handshake that names none)."""
    offered = socket.scope.get("subprotocols", ())
    await socket.accept(subprotocols=WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None)


@websocket("/ws")
async def live_socket(
    socket: WebSocket[Any, Any, Any],
    channels: NamedDependency[ChannelsPlugin],
    runtime: AppRuntime,
    batch: Annotated[str | None, QueryParameter(description=_BATCH)] = None,
) -> None:
    """`{"type": "SUBSCRIBE", "tenantId": ...}` in, that tenant's `JOB_UPDATE`s and
    `PROGRESS` events out. With FERRY_AUTH=on the key comes as the subprotocol
    `bearer.<key>` (offered with `ferry`), as `Authorization: Bearer <key>`, or as
    `?token=<key>`."""
    batched = _BATCH_VALUES.get("false" if batch is None else batch.lower())
    if batched is None:
        # Refused in the protocol's own words: a refused handshake says nothing.
        await accept(socket)
        message = f"batch: expected true or false, not {batch!r}"
        with suppress(Exception):  # the client went away meanwhile
            await socket.send_data(_encode({"type": "ERROR", "message": message}), mode="text")
            await socket.close(WS_1008_POLICY_VIOLATION, "batch: expected true or false")
        return
    await LiveSocket(socket, channels, runtime, batch=batched).run()


# -- Server-Sent Events ------------------------------------------------------------------

T = TypeVar("T")
_KEEP_ALIVE = ServerSentEventMessage(comment="keep-alive", data=None)


async def with_heartbeats(
    items: AsyncIterator[T], every_s: float, until: asyncio.Event
) -> AsyncIterator[T | None]:
    """`items`, with None whenever `every_s` passes without one, until `until` is set.
    The pending `anext` is waited on, never cancelled by the timeout: cancelling it
    would end `items`."""
    pending: asyncio.Future[T] | None = None
    stop = asyncio.ensure_future(until.wait())
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait(
                (pending, stop), timeout=every_s, return_when="FIRST_COMPLETED"
            )
            if stop in done:
                return
            if not done:
                yield None
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield item
    finally:
        stop.cancel()
        if pending is not None:
            # If the cancellation is lost in a client call, `items` still ends when
            # its subscription is closed; then nobody needs what the task returns.
            pending.add_done_callback(_discard)
            pending.cancel()


def _discard(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def sse_message(item: FeedItem | None) -> ServerSentEventMessage:
    if item is None:
        return _KEEP_ALIVE
    if isinstance(item, Resync):
        data = _encode({"type": "RESYNC", "tenantId": item.tenant_id, "seq": item.seq})
        return ServerSentEventMessage(data=data, event="RESYNC", id=item.seq)
    if progress_after(item) is not None:
        # No `id:`: Last-Event-ID must stay a JOB_UPDATE seq, where a resume starts.
        return ServerSentEventMessage(data=item, event="PROGRESS")
    return ServerSentEventMessage(data=item, event="JOB_UPDATE", id=seq_of(item))


@dataclass(slots=True, eq=False)
class _Stream:
    """One event stream, as the write watch sees it."""

    channels: ChannelsPlugin
    channel: str
    subscriber: LiveSubscriber
    tenant: str
    client: str
    cut_reason: str | None = None

    async def cut(self, reason: str) -> None:
        """Drop its backlog now; the stream ends once its waiting write has gone."""
        if self.cut_reason is None:
            self.cut_reason = reason
            count_cut("sse", self.client, [self.tenant], reason)
            await cut_off(self.channels, self.subscriber, self.channel)


async def _sse_stream(
    channels: ChannelsPlugin,
    runtime: Runtime,
    tenant: str,
    after: int | None,
    watch: WriteWatch,
    client: str,
) -> AsyncIterator[ServerSentEventMessage]:
    settings = runtime.settings
    channel = channel_name(settings.redis_namespace, tenant)
    async with subscription(channels, channel) as subscriber:
        stream = _Stream(channels, channel, subscriber, tenant, client)
        recorder.gauge("ferry_live_subscribers", "sse", amount=1)
        try:
            yield ServerSentEventMessage(
                comment="connected", data=None, retry=settings.sse_retry_ms
            )
            items = follow(runtime.events, tenant, subscriber.iter_events(), after)
            heartbeat_s, stopping = settings.sse_heartbeat_ms / 1000, runtime.draining.stopping
            async for item in with_heartbeats(items, heartbeat_s, stopping):
                watch.begin(stream)
                try:
                    yield sse_message(item)
                finally:
                    watch.end(stream)
                if stream.cut_reason is not None:
                    # The client reads again: it resumes with Last-Event-ID.
                    yield ServerSentEventMessage(comment=stream.cut_reason, data=None)
                    return
        finally:
            recorder.gauge("ferry_live_subscribers", "sse", amount=-1)


_SEQ = "A seq this stream sent (its `id:`): the events after it are replayed first."


@get(
    "/events",
    summary="Live job events of a tenant (Server-Sent Events)",
    tags=["events"],
    raises=TENANT_CHECKED,
)
async def live_events(
    request: Request[Any, Any, Any],
    channels: NamedDependency[ChannelsPlugin],
    runtime: AppRuntime,
    tenant_id: Annotated[
        str,
        QueryParameter(name="tenantId", min_length=1, max_length=100, pattern=TENANT_ID_PATTERN),
    ],
    last_event_id: Annotated[
        int | None, HeaderParameter(name="Last-Event-ID", ge=0, le=MAX_SEQ, description=_SEQ)
    ] = None,
    last_event_id_query: Annotated[
        int | None, QueryParameter(name="lastEventId", ge=0, le=MAX_SEQ, description=_SEQ)
    ] = None,
) -> ServerSentEvent:
    """`event: JOB_UPDATE` with `id: <seq>`, and `event: PROGRESS` (no `id:`); with
    `Last-Event-ID` (or `?lastEventId=`) it first replays the JOB_UPDATEs after that seq,
    or sends `event: RESYNC` when they are gone."""
    principal_of(request).check(tenant_id)
    # Proxies must pass each event through as it comes (nginx buffers otherwise).
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if request.method == HttpMethod.HEAD:
        return ServerSentEvent([], headers=headers)  # the headers only: no stream to hold open
    after = last_event_id if last_event_id is not None else last_event_id_query
    watch, client = write_watch(request.app.state), client_of(request.scope)
    stream = _sse_stream(channels, runtime, tenant_id, after, watch, client)
    return ServerSentEvent(stream, headers=headers)
