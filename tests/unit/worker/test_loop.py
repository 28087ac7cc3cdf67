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
