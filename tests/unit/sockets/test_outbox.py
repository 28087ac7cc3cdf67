"""The outbox of one WebSocket: order, what goes in one write, room, failures."""

from __future__ import annotations

import asyncio

import pytest

from ferry.sockets.outbox import Outbox, lines


class Socket:
    """Records each write; a write waits while `held` is clear."""

    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []
        self.held = asyncio.Event()
        self.held.set()
        self.fail: Exception | None = None

    async def write(self, messages: list[bytes]) -> None:
        self.writes.append(messages)
        await self.held.wait()
        if self.fail is not None:
            raise self.fail


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_frame_of_lines_keeps_the_order() -> None:
    assert lines([b'{"a":1}', b'{"b":2}']) == b'{"a":1}\n{"b":2}'


async def test_what_arrives_during_a_write_goes_in_the_next_one_in_order() -> None:
    socket = Socket()
    outbox = Outbox(socket.write)
    socket.held.clear()
    await outbox.put(b"1")
    await settle()  # the first write has begun, and waits
    for message in (b"2", b"3", b"4"):
        await outbox.put(message)
    socket.held.set()
    await settle()
    assert socket.writes == [[b"1"], [b"2", b"3", b"4"]]
    await outbox.close()


async def test_a_sender_waits_while_the_room_is_full() -> None:
    socket = Socket()
    outbox = Outbox(socket.write, room=2)
    socket.held.clear()
    await outbox.put(b"1")
    await settle()  # taken: the write waits
    await outbox.put(b"2")
    await outbox.put(b"3")
    third = asyncio.create_task(outbox.put(b"4"))
    await settle()
    assert not third.done()
    socket.held.set()
    await asyncio.wait_for(third, 1)
    await settle()
    assert [m for write in socket.writes for m in write] == [b"1", b"2", b"3", b"4"]
    await outbox.close()


async def test_a_failed_write_is_raised_to_the_senders() -> None:
    socket = Socket()
    outbox = Outbox(socket.write, room=1)
    socket.fail = ConnectionResetError("gone")
    socket.held.clear()
    await outbox.put(b"1")
    await settle()
    await outbox.put(b"2")
    waiting = asyncio.create_task(outbox.put(b"3"))  # no room: waits
    socket.held.set()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(waiting, 1)
    with pytest.raises(ConnectionResetError):
        await outbox.put(b"4")
    await outbox.close()


async def test_dropped_messages_are_never_written() -> None:
    socket = Socket()
    outbox = Outbox(socket.write)
    socket.held.clear()
    await outbox.put(b"1")
    await settle()
    await outbox.put(b"2")
    outbox.drop()
    socket.held.set()
    await settle()
    await outbox.put(b"3")
    await settle()
    assert socket.writes == [[b"1"], [b"3"]]
    await outbox.close()
    await outbox.put(b"4")  # after close: never written
    await settle()
    assert socket.writes == [[b"1"], [b"3"]]
