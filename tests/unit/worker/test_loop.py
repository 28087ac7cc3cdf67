"""The worker's background loop stops its services, even one whose cancellation a
library swallowed (redis-py's asyncio client can: a command returns normally after
its task was cancelled)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ferry import redis_client
from ferry.worker.loop import BackgroundLoop


@pytest.fixture(autouse=True)
def quick_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_client, "CANCEL_GRACE_S", 0.2)


def test_a_service_that_swallows_its_cancellation_still_stops() -> None:
    beats: list[float] = []
    swallowed = threading.Event()

    async def keep_beating() -> None:  # what a command that swallows a cancel looks like
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed.is_set():
                    raise
                swallowed.set()
            beats.append(asyncio.get_running_loop().time())

    loop = BackgroundLoop("loop-test")
    loop.add_service(keep_beating)
    loop.start()
    thread = loop._thread
    assert thread is not None
    loop.stop(timeout=5)
    assert swallowed.is_set()
    assert not thread.is_alive()  # the service, and with it the loop, has ended
    count = len(beats)
    threading.Event().wait(0.1)
    assert len(beats) == count


def test_a_service_that_never_ends_is_given_up_on_and_the_loop_stops(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(redis_client, "CANCEL_GIVE_UP_S", 0.3)
    closed, released = threading.Event(), threading.Event()

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if released.is_set():
                    raise

    async def close() -> None:
        closed.set()

    loop = BackgroundLoop("loop-test")
    loop.add_service(stubborn)
    loop.on_stop(close)
    loop.start()
    thread = loop._thread
    assert thread is not None
    loop.stop(timeout=3)  # the thread itself stays: asyncio.run waits for the task at its end
    assert closed.is_set()  # what the services use is closed all the same
    assert "did not end when cancelled; it waits at" in caplog.text
    assert "(stubborn)" in caplog.text  # where it is stuck, not where it was started
    # The test's own end: no thread left behind.
    released.set()
    running = loop.loop
    running.call_soon_threadsafe(lambda: [task.cancel() for task in asyncio.all_tasks(running)])
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_stop_callbacks_run_after_the_services_end() -> None:
    order: list[str] = []

    async def service() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            order.append("service ended")

    async def close() -> None:
        order.append("closed")

    loop = BackgroundLoop("loop-test")
    loop.add_service(service)
    loop.on_stop(close)
    loop.start()
    loop.stop(timeout=5)
    assert order == ["service ended", "closed"]
