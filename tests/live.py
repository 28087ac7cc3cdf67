"""Real clients of Ferry's live events: a WebSocket (`websockets`) and SSE (`httpx`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse
from websockets.asyncio.client import ClientConnection, connect


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/ws"


class Socket:
    """A WebSocket subscriber speaking the seeds' protocol."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.connection.send(message if isinstance(message, str) else json.dumps(message))

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(
            await asyncio.wait_for(self.connection.recv(), timeout)
        )
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
async def socket(base: str) -> AsyncIterator[Socket]:
    async with connect(ws_url(base), open_timeout=10) as connection:
        client = Socket(connection)
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
