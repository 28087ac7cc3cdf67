"""The outbox of one WebSocket: order, what goes in one write, room, failures."""

from __future__ import annotations

import asyncio

import pytest

from ferry.sockets.outbox import FRAME_BYTES, Outbox, lines


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
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(waiting, 1)
    with pytest.raises(ConnectionError) as failed:
        await outbox.put(b"4")
    assert isinstance(failed.value.__cause__, ConnectionResetError)
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
    for message in (b"4", b"5"):  # after close: dropped, and no sender waits for room
        await asyncio.wait_for(outbox.put(message), 1)
    await settle()
    assert socket.writes == [[b"1"], [b"3"]]


async def test_close_stops_a_write_that_waits() -> None:
    """A client that stopped reading: its write never ends, and the cut's close must
    not wait for it."""
    socket = Socket()
    outbox = Outbox(socket.write)
    socket.held.clear()  # never set: the write waits for good
    await outbox.put(b"1")
    await settle()
    await asyncio.wait_for(outbox.close(), 1)
    assert socket.writes == [[b"1"]]


async def test_a_write_takes_at_most_a_frames_bytes() -> None:
    socket = Socket()
    outbox = Outbox(socket.write, room=1000)
    socket.held.clear()
    await outbox.put(b"first")
    await settle()
    big = b"x" * (FRAME_BYTES // 3)
    for _ in range(4):
        await outbox.put(big)
    await outbox.put(b"y" * (FRAME_BYTES + 1))  # larger than a frame: alone
    socket.held.set()
    await settle()
    assert [len(write) for write in socket.writes] == [1, 2, 2, 1]
    assert all(sum(len(m) + 1 for m in write) <= FRAME_BYTES for write in socket.writes[:3])
    await outbox.close()
