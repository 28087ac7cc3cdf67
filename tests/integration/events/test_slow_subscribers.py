"""A subscriber that stops reading is cut and costs the others nothing: a real API
process (uvicorn), a raw WebSocket and an httpx SSE client that stop reading, a
good WebSocket subscriber beside them, events published through Redis.

A client that stops reading is noticed once the buffers between it and the server
are full: its kernel's receive buffer, the server's send buffer (Linux grows it up
to `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default) and the server's transport.
The events here are large (an error of 2 KiB each) so that a few thousand fill
them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from ferry.db.models import utcnow
from ferry.events.event import JobEvent
from ferry.events.log import Committed
from ferry.events.redis_log import RedisEventLog
from ferry.migrate import upgrade
from tests.support.jobs import new_tenant
from tests.support.live import StalledSocket, seqs, socket, stream
from tests.support.processes import api_process, shared_env
from tests.support.services import TEST_REDIS_URL, postgres_database, redis_namespace

WRITE_TIMEOUT_MS = 1000
ERROR = "e" * 2048


def send_buffer_max() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 << 20


# Events of about 2.2 KiB: three times what the server's send buffer may hold.
EVENTS = max(6000, 3 * send_buffer_max() // 2200)


@dataclass
class Api:
    base: str
    namespace: str
    log: Path


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """An API process of this test's own, on its own database and Redis namespace."""
    with postgres_database() as database_url, redis_namespace() as namespace:
        upgrade(database_url)
        env = shared_env(
            database_url,
            namespace,
            LIVE_WRITE_TIMEOUT_MS=str(WRITE_TIMEOUT_MS),
            EVENT_BACKLOG="16",
            LOG_LEVEL="WARNING",
        )
        log = tmp_path / "api.log"
        with api_process(env, Path.cwd(), log) as base:
            yield Api(base, namespace, log)


async def publish(namespace: str, tenant: str, count: int) -> None:
    """`count` events of the tenant through the event log (numbered, kept, published)."""
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    try:
        log = RedisEventLog(client, namespace, retain=EVENTS + 100)
        for start in range(0, count, 200):
            at = utcnow()
            events = [
                JobEvent(tenant, uuid.uuid4(), "FAILED", 1, ERROR, at)
                for _ in range(min(200, count - start))
            ]
            await log.append([Committed(events)])
    finally:
        await client.aclose()


async def cuts(base: str, transport: str) -> float:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        metrics = (await client.get("/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "ferry_live_subscribers_cut"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["transport"] == transport
    )


async def wait_for_cut(base: str, transport: str, within_s: float = 30) -> None:
    """Until the API counts one cut (its metrics are flushed once a second)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while await cuts(base, transport) < 1:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no {transport} subscriber was cut within {within_s:.0f} s")
        await asyncio.sleep(0.2)


def cut_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "live subscriber cut" in line]


async def test_a_websocket_that_stops_reading_is_closed_with_1013(api: Api) -> None:
    tenant = new_tenant()
    stalled = await asyncio.to_thread(StalledSocket.subscribed, api.base, tenant, compress=False)
    try:
        async with socket(api.base) as good:
            await good.subscribe(tenant)
            await publish(api.namespace, tenant, EVENTS)
            # The good subscriber gets every event, in order, while the other is stuck.
            assert seqs(await good.updates(EVENTS, timeout=120)) == list(range(1, EVENTS + 1))
            await wait_for_cut(api.base, "websocket")
            await publish(api.namespace, tenant, 1)  # and it is still served after the cut
            assert seqs(await good.updates(1)) == [EVENTS + 1]
        # Reading again, the stalled client finds what was written before the cut, in
        # order, then the close: 1013 (try again later) with the reason.
        received, code, reason = await asyncio.to_thread(stalled.resume)
    finally:
        stalled.close()
    assert code == 1013, (code, reason)
    assert "too slow" in reason
    updates = [message for message in received if message["type"] == "JOB_UPDATE"]
    assert seqs(updates) == list(range(1, len(updates) + 1))
    assert len(updates) < EVENTS
    assert len(cut_lines(api.log)) == 1


async def test_an_event_stream_that_stops_reading_ends_and_resumes(api: Api) -> None:
    tenant = new_tenant()
    async with socket(api.base) as good, stream(api.base, tenant) as stalled:
        await good.subscribe(tenant)
        await publish(api.namespace, tenant, EVENTS)
        assert seqs(await good.updates(EVENTS, timeout=120)) == list(range(1, EVENTS + 1))
        await wait_for_cut(api.base, "sse")
        # Reading again: what was written before the cut, in order, then the end.
        before_cut = await stalled.rest()
    assert seqs(before_cut) == list(range(1, len(before_cut) + 1))
    assert len(before_cut) < EVENTS
    # The client resumes where it stopped (as EventSource does) and misses nothing.
    last = before_cut[-1]["seq"] if before_cut else 0
    async with stream(api.base, tenant, last_event_id=last) as resumed:
        assert seqs(await resumed.updates(EVENTS - last, timeout=60)) == list(
            range(last + 1, EVENTS + 1)
        )
    assert len(cut_lines(api.log)) == 1


def test_a_websocket_that_answers_no_ping_is_closed(tmp_path: Path) -> None:
    """However much room its buffers still have, a socket that stopped reading answers
    no ping: the server closes it after WS_PING_MS (twice: the ping, then its wait)."""
    with postgres_database() as database_url, redis_namespace() as namespace:
        upgrade(database_url)
        env = shared_env(database_url, namespace, WS_PING_MS="300", LOG_LEVEL="WARNING")
        with api_process(env, tmp_path, tmp_path / "api.log") as base:
            stalled = StalledSocket.subscribed(base, new_tenant(), compress=False)
            try:
                time.sleep(3)  # ten pings' worth: no event was ever sent to it
                stalled.sock.settimeout(10)
                while data := stalled.sock.recv(65536):  # what came, to the server's end
                    stalled.protocol.receive_data(data)  # (answering nothing: it is gone)
            finally:
                stalled.close()
    close = stalled.protocol.close_rcvd
    assert close is not None and (close.code, close.reason) == (1011, "keepalive ping timeout")


def test_websockets_are_not_compressed(tmp_path: Path) -> None:
    with postgres_database() as database_url, redis_namespace() as namespace:
        upgrade(database_url)
        env = shared_env(database_url, namespace, LOG_LEVEL="WARNING")
        with api_process(env, tmp_path, tmp_path / "api.log") as base:
            stalled = StalledSocket.subscribed(base, new_tenant(), compress=True)  # offers it
            try:
                assert stalled.protocol.extensions == []
            finally:
                stalled.close()
