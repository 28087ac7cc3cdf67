"""Real clients of Ferry's live events: a WebSocket (`websockets`) and SSE (`httpx`)."""

from __future__ import annotations

import asyncio
import json
import re
import socket as socket_module
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.protocol import CLOSED
from websockets.uri import parse_uri

# The live socket's URL, whatever its query (the dashboard asks for `?batch=true`):
# for a browser test's `page.route_web_socket`.
LIVE_SOCKET = re.compile(r"/ws(\?.*)?$")


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/ws"


class Socket:
    """A WebSocket subscriber speaking the seeds' protocol: a message a frame, or with
    `batch` (`/ws?batch=true`) a frame of one or more messages, one a line."""

    def __init__(self, connection: ClientConnection, *, batch: bool = False) -> None:
        self.connection = connection
        self.batch = batch
        self.frames: list[int] = []  # with `batch`: how many messages each frame held
        self._lines: list[str] = []

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.connection.send(message if isinstance(message, str) else json.dumps(message))

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        if not self._lines:
            frame = await asyncio.wait_for(self.connection.recv(), timeout)
            assert isinstance(frame, str), frame
            self._lines = frame.split("\n") if self.batch else [frame]
            self.frames.append(len(self._lines))
        message: dict[str, Any] = json.loads(self._lines.pop(0))
        return message

    async def subscribe(self, tenant: str) -> dict[str, Any]:
        await self.send({"type": "SUBSCRIBE", "tenantId": tenant})
        reply = await self.receive()
        assert reply["type"] == "SUBSCRIBED" and reply["tenantId"] == tenant, reply
        return reply

    async def updates(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        """The next `count` JOB_UPDATEs (anything else received fails)."""
        received: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(received) < count:
                message = await self.receive(timeout)
                assert message["type"] == "JOB_UPDATE", message
                received.append(message)
        return received

    async def silent(self, seconds: float) -> bool:
        """True if nothing arrives for `seconds`."""
        try:
            message = await self.receive(seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected message: {message}")


@asynccontextmanager
async def socket(base: str, *, batch: bool = False) -> AsyncIterator[Socket]:
    url = ws_url(base) + ("?batch=true" if batch else "")
    async with connect(url, open_timeout=10) as connection:
        client = Socket(connection, batch=batch)
        hello = await client.receive()
        assert hello["type"] == "CONNECTED", hello
        yield client


class Stream:
    """An SSE subscriber."""

    def __init__(self, events: AsyncIterator[ServerSentEvent]) -> None:
        self.events = events

    async def next(self, timeout: float = 10) -> ServerSentEvent:
        """The next event; heartbeats (comments) are skipped (httpx-sse reports a
        comment-only block as an empty "message" once the stream has had an id)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await anext(self.events)
                if event.event != "message" or event.data:
                    return event

    async def updates(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(received) < count:
                event = await self.next(timeout)
                assert event.event == "JOB_UPDATE", (event.event, event.data)
                update: dict[str, Any] = event.json()
                assert event.id == str(update["seq"]), (event.id, update)
                received.append(update)
        return received

    async def rest(self, timeout: float = 30) -> list[dict[str, Any]]:
        """The JOB_UPDATEs up to the end of the stream (the server ended it)."""
        received: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            async for event in self.events:
                if event.event == "JOB_UPDATE":
                    received.append(event.json())
                else:  # a heartbeat, or the comment that says why the stream ends
                    assert event.event == "message" and not event.data, (event.event, event.data)
        return received


@asynccontextmanager
async def stream(base: str, tenant: str, last_event_id: int | None = None) -> AsyncIterator[Stream]:
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    async with (
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=30)) as client,
        aconnect_sse(
            client, "GET", "/events", params={"tenantId": tenant}, headers=headers
        ) as source,
    ):
        source.response.raise_for_status()
        events = source.aiter_sse()
        hello = await asyncio.wait_for(anext(events), 10)  # the `retry:` hint comes first
        assert hello.retry is not None and hello.data == "", hello
        yield Stream(events)


def statuses(updates: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(update["jobId"], update["status"]) for update in updates]


def seqs(updates: list[dict[str, Any]]) -> list[int]:
    return [update["seq"] for update in updates]


class StalledSocket:
    """A WebSocket client that subscribes and then stops reading: a raw socket, so
    nothing reads on its behalf; its kernel receive buffer fills, then the server's
    send buffer. Blocking calls (run them in a thread from async code)."""

    def __init__(self, base: str, *, compress: bool = True) -> None:
        extensions = enable_client_permessage_deflate(None) if compress else None
        self.protocol = ClientProtocol(parse_uri(ws_url(base)), extensions=extensions)
        host, port = base.removeprefix("http://").rsplit(":", 1)
        self.sock = socket_module.create_connection((host, int(port)), timeout=10)
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    @classmethod
    def subscribed(cls, base: str, tenant: str, *, compress: bool = True) -> StalledSocket:
        """Connected and subscribed to `tenant` (offering permessage-deflate, as browsers
        do, unless not `compress`); from now on it reads nothing."""
        stalled = cls(base, compress=compress)
        try:
            stalled.until(lambda message: message["type"] == "CONNECTED")
            stalled.protocol.send_text(
                json.dumps({"type": "SUBSCRIBE", "tenantId": tenant}).encode()
            )
            stalled._flush()
            stalled.until(lambda message: message["type"] == "SUBSCRIBED")
        except BaseException:
            stalled.close()
            raise
        return stalled

    def until(self, wanted: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Read until a message `wanted` has come; the messages read."""
        received: list[dict[str, Any]] = []
        while not any(map(wanted, received)):
            received += self._read()
            if self.protocol.state is CLOSED or self.protocol.close_rcvd is not None:
                raise AssertionError(f"closed ({self.protocol.close_rcvd}) while reading")
        return received

    def resume(self, timeout: float = 30) -> tuple[list[dict[str, Any]], int | None, str]:
        """Read again, to the end of the connection: the messages that were waiting,
        and the close code and reason (None: it ended without a close frame)."""
        received: list[dict[str, Any]] = []
        self.sock.settimeout(timeout)
        while self.protocol.close_rcvd is None and self.protocol.state is not CLOSED:
            received += self._read()
        close = self.protocol.close_rcvd
        return received, close.code if close else None, close.reason if close else ""

    def _read(self) -> list[dict[str, Any]]:
        data = self.sock.recv(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        self._flush()
        return [
            json.loads(bytes(event.data))
            for event in self.protocol.events_received()
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT
        ]

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()
