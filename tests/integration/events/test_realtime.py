"""Live events across processes: two API processes (uvicorn) and a `dramatiq` worker on
one Redis, real WebSocket and SSE clients. A subscriber of either API sees every
status change of its tenant, in order, and nothing of other tenants."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from ferry.db.models import utcnow
from ferry.events.event import JobEvent
from ferry.events.log import Committed
from ferry.events.redis_log import RedisEventLog
from tests.support.jobs import new_tenant, sleep_job
from tests.support.live import seqs, socket, statuses, stream, ws_url
from tests.support.processes import api_process, ferry_env, free_port, shared_env, worker_process
from tests.support.services import TEST_REDIS_URL, redis_namespace, redis_server

# Small, so that the tests reach the limits: a batch of 200 jobs overflows a
# subscriber's backlog at once (the feed reads the rest back from the history),
# and 900 events outrun the history (a resume from the start must resync).
HISTORY = 500  # events kept per tenant
BACKLOG = 16  # events queued per subscriber before the oldest are dropped


@dataclass
class Stack:
    api1: str
    api2: str
    namespace: str


@pytest.fixture(scope="module")
def stack(module_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("realtime")
    with redis_namespace() as namespace:
        env = shared_env(
            module_database,
            namespace,
            EVENT_HISTORY=str(HISTORY),
            EVENT_BACKLOG=str(BACKLOG),
            SSE_HEARTBEAT_MS="300",
            WS_MAX_SUBSCRIPTIONS="3",
            LOG_LEVEL="WARNING",
        )
        with (
            api_process(env, logs, logs / "api1.log") as api1,
            api_process(env, logs, logs / "api2.log") as api2,
            worker_process(env, logs / "worker.log"),
        ):
            yield Stack(api1, api2, namespace)


async def create(base: str, *jobs: dict[str, Any]) -> list[str]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        if len(jobs) == 1:
            response = await client.post("/jobs", json=jobs[0])
            assert response.status_code == 201, response.text
            return [response.json()["jobId"]]
        response = await client.post("/jobs/batch", json={"jobs": list(jobs)})
        assert response.status_code == 201, response.text
        return list(response.json()["jobIds"])


def lifecycle(job_ids: list[str]) -> list[tuple[str, str]]:
    return [
        (job_id, status) for job_id in job_ids for status in ("PENDING", "RUNNING", "COMPLETED")
    ]


def per_job(updates: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The updates grouped by job, each job's in the order received."""
    order = list(dict.fromkeys(update["jobId"] for update in updates))
    return [(job, status) for job in order for j, status in statuses(updates) if j == job]


async def test_a_job_created_on_one_api_streams_to_both_transports_of_the_other(
    stack: Stack,
) -> None:
    tenant = new_tenant()
    async with socket(stack.api2) as ws, stream(stack.api2, tenant) as sse:
        subscribed = await ws.subscribe(tenant)
        assert subscribed["seq"] == 0
        [job_id] = await create(stack.api1, sleep_job(tenant, 50))
        over_ws, over_sse = await ws.updates(3), await sse.updates(3)
    assert statuses(over_ws) == statuses(over_sse) == lifecycle([job_id])
    assert seqs(over_ws) == seqs(over_sse) == [1, 2, 3]
    assert over_ws == over_sse
    first = over_ws[0]
    assert set(first) == {"type", "tenantId", "jobId", "status", "attempts", "error", "seq", "at"}
    assert (first["tenantId"], first["attempts"], first["error"]) == (tenant, 0, None)
    assert [update["attempts"] for update in over_ws] == [0, 1, 1]


async def test_subscribers_see_only_their_own_tenant(stack: Stack) -> None:
    mine, other = new_tenant(), new_tenant()
    async with socket(stack.api1) as ws, stream(stack.api2, mine) as sse:
        await ws.subscribe(mine)
        others = await create(stack.api2, *[sleep_job(other) for _ in range(5)])
        [job_id] = await create(stack.api1, sleep_job(mine))
        over_ws, over_sse = await ws.updates(3), await sse.updates(3)
        assert await ws.silent(0.5)
    assert statuses(over_ws) == statuses(over_sse) == lifecycle([job_id])
    assert not {update["jobId"] for update in over_ws + over_sse} & set(others)


async def test_each_jobs_events_arrive_in_lifecycle_order_under_load(stack: Stack) -> None:
    tenant = new_tenant()
    async with socket(stack.api1) as ws, stream(stack.api2, tenant) as sse:
        await ws.subscribe(tenant)
        job_ids = await create(stack.api1, *[sleep_job(tenant) for _ in range(200)])
        over_ws, over_sse = await ws.updates(600), await sse.updates(600)
    for updates in (over_ws, over_sse):
        assert seqs(updates) == list(range(1, 601))
        assert sorted(per_job(updates)) == sorted(lifecycle(job_ids))
        assert per_job(updates) == lifecycle(list(dict.fromkeys(u["jobId"] for u in updates)))


async def test_a_batch_socket_gets_several_events_a_frame_in_order(stack: Stack) -> None:
    """`/ws?batch=true`: the events that arrive while a frame goes out go together in
    the next one, one a line, in the order a socket of one event a frame gets them."""
    tenant = new_tenant()
    async with socket(stack.api1, batch=True) as batched, socket(stack.api1) as single:
        await batched.subscribe(tenant)
        await single.subscribe(tenant)
        job_ids = await create(stack.api2, *[sleep_job(tenant) for _ in range(200)])
        over_batched, over_single = await batched.updates(600), await single.updates(600)
    assert over_batched == over_single
    assert seqs(over_batched) == list(range(1, 601))
    assert sorted(per_job(over_batched)) == sorted(lifecycle(job_ids))
    assert max(batched.frames) > 1 and len(batched.frames) < 600 + 2
    assert set(single.frames) == {1}


@pytest.mark.parametrize("value", ["maybe", ""])
async def test_a_bad_batch_value_is_named_and_the_socket_closed(stack: Stack, value: str) -> None:
    async with connect(ws_url(stack.api1) + f"?batch={value}", open_timeout=10) as ws:
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error == {
            "type": "ERROR",
            "message": f"batch: expected true or false, not {value!r}",
        }
        with pytest.raises(ConnectionClosedError) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_websocket_protocol(stack: Stack) -> None:
    first, second = new_tenant(), new_tenant()
    async with socket(stack.api1) as ws:
        await ws.send("not json")
        assert (await ws.receive())["type"] == "ERROR"
        await ws.send({"type": "PING"})
        error = await ws.receive()
        assert error["type"] == "ERROR" and "SUBSCRIBE" in error["message"]
        await ws.send({"type": "SUBSCRIBE"})
        error = await ws.receive()
        assert error["type"] == "ERROR" and "tenantId" in error["message"]
        await ws.send({"type": "SUBSCRIBE", "tenantId": ""})
        assert (await ws.receive())["type"] == "ERROR"
        await ws.send({"type": "SUBSCRIBE", "tenantId": "a b"})
        assert (await ws.receive())["type"] == "ERROR"
        # Still open: subscribe to two tenants, then leave one.
        await ws.subscribe(first)
        await ws.subscribe(second)
        await ws.subscribe(second)  # again: acknowledged, not doubled
        [job1] = await create(stack.api1, sleep_job(first))
        [job2] = await create(stack.api1, sleep_job(second))
        updates = await ws.updates(6)
        assert sorted(statuses(updates)) == sorted(lifecycle([job1, job2]))
        await ws.send({"type": "UNSUBSCRIBE", "tenantId": first})
        assert await ws.receive() == {"type": "UNSUBSCRIBED", "tenantId": first}
        await create(stack.api1, sleep_job(first))
        [job3] = await create(stack.api1, sleep_job(second))
        assert statuses(await ws.updates(3)) == lifecycle([job3])
        assert await ws.silent(0.5)
        # At most WS_MAX_SUBSCRIPTIONS tenants per socket (3 here).
        for tenant in (new_tenant(), new_tenant()):
            await ws.subscribe(tenant)
        await ws.send({"type": "SUBSCRIBE", "tenantId": new_tenant()})
        limited = await ws.receive()
        assert limited == {"type": "ERROR", "message": "at most 3 subscriptions"}


async def test_sse_resumes_after_a_disconnect_with_last_event_id(stack: Stack) -> None:
    tenant = new_tenant()
    async with stream(stack.api1, tenant) as sse:
        [job1] = await create(stack.api1, sleep_job(tenant))
        seen = await sse.updates(3)
    # Disconnected: what happens now is missed, then replayed from the last id.
    missed = await create(stack.api2, sleep_job(tenant), sleep_job(tenant))
    async with socket(stack.api2) as ws:
        await ws.subscribe(tenant)  # only to know when the jobs are done
        [job4] = await create(stack.api2, sleep_job(tenant))
        await ws.updates(3)
    async with stream(stack.api2, tenant, last_event_id=seen[-1]["seq"]) as sse:
        replayed = await sse.updates(9)
        [job5] = await create(stack.api1, sleep_job(tenant))
        live = await sse.updates(3)
    assert statuses(seen) == lifecycle([job1])
    assert sorted(statuses(replayed)) == sorted(lifecycle([*missed, job4]))
    assert seqs(replayed) == list(range(4, 13))
    assert seqs(live) == [13, 14, 15] and statuses(live) == lifecycle([job5])


async def test_sse_sends_resync_when_the_gap_is_older_than_the_history(stack: Stack) -> None:
    tenant = new_tenant()
    async with socket(stack.api1) as ws:
        await ws.subscribe(tenant)
        await create(stack.api1, *[sleep_job(tenant) for _ in range(300)])
        await ws.updates(900)  # the history keeps only about HISTORY of them
    async with stream(stack.api2, tenant, last_event_id=1) as sse:
        resync = await sse.next()
        assert (resync.event, resync.id) == ("RESYNC", "900")
        assert resync.json() == {"type": "RESYNC", "tenantId": tenant, "seq": 900}
        [job_id] = await create(stack.api1, sleep_job(tenant))
        after = await sse.updates(3)
        assert statuses(after) == lifecycle([job_id]) and seqs(after) == [901, 902, 903]
    # A seq this tenant never reached (its Redis lost data, say): resync too.
    async with stream(stack.api1, tenant, last_event_id=10_000) as sse:
        assert ((resync := await sse.next()).event, resync.id) == ("RESYNC", "903")


async def test_sse_rejects_a_bad_last_event_id_and_a_missing_tenant(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api1) as client:
        bad = await client.get("/events", params={"tenantId": "t"}, headers={"Last-Event-ID": "x"})
        missing = await client.get("/events")
        malformed = await client.get("/events", params={"tenantId": "a b"})
    assert bad.status_code == 400 and "Last-Event-ID" in bad.text
    assert missing.status_code == 400 and "tenantId" in missing.text
    assert malformed.status_code == 400 and "tenantId" in malformed.text


async def test_an_idle_sse_stream_sends_heartbeats(stack: Stack) -> None:
    async with (
        httpx.AsyncClient(base_url=stack.api1, timeout=5) as client,
        client.stream("GET", "/events", params={"tenantId": new_tenant()}) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        lines: list[str] = []
        async with asyncio.timeout(5):
            async for line in response.aiter_lines():
                lines.append(line)
                if lines.count(": keep-alive") == 2:
                    break
    assert lines[:2] == [": connected", "retry: 2000"]


async def test_two_hundred_subscribers_each_get_every_event(stack: Stack) -> None:
    tenant = new_tenant()
    waiting = [200]
    all_subscribed = asyncio.Event()

    def subscribed() -> None:
        waiting[0] -= 1
        if not waiting[0]:
            all_subscribed.set()

    async def over_ws(base: str) -> list[dict[str, Any]]:
        async with socket(base) as ws:
            await ws.subscribe(tenant)
            subscribed()
            return await ws.updates(30, timeout=60)

    async def over_sse(base: str) -> list[dict[str, Any]]:
        async with stream(base, tenant) as sse:  # the stream has subscribed once it opened
            subscribed()
            return await sse.updates(30, timeout=60)

    bases = (stack.api1, stack.api2)
    tasks = [asyncio.create_task(over_ws(bases[i % 2])) for i in range(100)]
    tasks += [asyncio.create_task(over_sse(bases[i % 2])) for i in range(100)]
    await asyncio.wait_for(all_subscribed.wait(), 60)
    job_ids = await create(stack.api1, *[sleep_job(tenant) for _ in range(10)])
    for updates in await asyncio.gather(*tasks):
        assert seqs(updates) == list(range(1, 31))
        assert sorted(statuses(updates)) == sorted(lifecycle(job_ids))


async def test_a_slow_subscriber_loses_nothing_and_holds_up_no_one(stack: Stack) -> None:
    """Far more events than a subscriber backlog holds reach a client that does not
    read: its backlog overflows, and the feed reads the dropped events back from
    the history. A fast subscriber meanwhile gets them all, as they come."""
    tenant, count = new_tenant(), 40_000
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    log = RedisEventLog(client, stack.namespace, retain=count)  # a long history for this one
    job_ids = [uuid.uuid4() for _ in range(count)]
    try:
        async with (
            stream(stack.api1, tenant) as slow,
            socket(stack.api1) as fast,
        ):
            await fast.subscribe(tenant)
            for start in range(0, count, 1000):
                at = utcnow()
                await log.append(
                    [
                        Committed(
                            [
                                JobEvent(tenant, job_id, "PENDING", 0, None, at)
                                for job_id in job_ids[start : start + 1000]
                            ]
                        )
                    ]
                )
            fast_updates = await fast.updates(count, timeout=60)
            slow_updates = await slow.updates(count, timeout=60)  # only now does it read
    finally:
        await client.aclose()
    for updates in (fast_updates, slow_updates):
        assert seqs(updates) == list(range(1, count + 1))
        assert [update["jobId"] for update in updates] == [str(job_id) for job_id in job_ids]


async def test_the_embedded_default_streams_over_both_transports(tmp_path: Path) -> None:
    env = ferry_env(LOG_LEVEL="WARNING")
    with api_process(env, tmp_path, tmp_path / "dev.log", embedded=True) as base:
        async with httpx.AsyncClient() as client:  # and its dashboard
            page = await client.get(f"{base}/")
        assert page.status_code == 200 and 'data-testid="connection-status"' in page.text
        tenant = new_tenant()
        async with socket(base) as ws, stream(base, tenant) as sse:
            await ws.subscribe(tenant)
            [job_id] = await create(base, sleep_job(tenant, 20))
            over_ws, over_sse = await ws.updates(3), await sse.updates(3)
        assert statuses(over_ws) == statuses(over_sse) == lifecycle([job_id])
        async with stream(base, tenant, last_event_id=1) as sse:
            assert seqs(await sse.updates(2)) == [2, 3]


async def test_subscribers_outlive_a_redis_restart(database_url: str, tmp_path: Path) -> None:
    """Redis dies and comes back empty: the API process reconnects its subscriptions,
    and a subscriber learns from a RESYNC that the counter started over."""
    with redis_server(free_port(), tmp_path) as server:
        env = ferry_env(DATABASE_URL=database_url, REDIS_URL=server.url, LOG_LEVEL="WARNING")
        with api_process(env, tmp_path, tmp_path / "api.log") as base:
            tenant = new_tenant()
            async with socket(base) as ws:
                await ws.subscribe(tenant)
                await create(base, sleep_job(tenant))  # no worker here: PENDING only
                assert seqs(await ws.updates(1)) == [1]
                server.stop()
                server.start()  # empty: the tenant's counter is gone
                # Once reconnected, the feed finds the counter below what it sent.
                assert await ws.receive(20) == {"type": "RESYNC", "tenantId": tenant, "seq": 0}
                [job_id] = await create(base, sleep_job(tenant))
                update = await ws.receive()
                assert (update["type"], update["jobId"], update["seq"]) == ("JOB_UPDATE", job_id, 1)


async def test_closed_subscriptions_leave_nothing_subscribed(stack: Stack) -> None:
    """Clients that go away (SSE cancelled mid-stream, sockets closed, unsubscribed)
    release their subscriptions: the API processes stop listening to the channel."""
    tenant = new_tenant()
    channel = f"{stack.namespace}:events:live:{tenant}"
    client = aioredis.Redis.from_url(TEST_REDIS_URL)

    async def listeners() -> int:
        [(_, count)] = await client.pubsub_numsub(channel)
        return int(count)

    try:
        for _ in range(5):
            async with stream(stack.api1, tenant), socket(stack.api2) as ws:
                await ws.subscribe(tenant)
                assert await listeners() == 2  # one per API process, however many clients
        async with socket(stack.api2) as ws:
            await ws.subscribe(tenant)
            await ws.send({"type": "UNSUBSCRIBE", "tenantId": tenant})
            await ws.receive()
            async with asyncio.timeout(5):
                while await listeners():
                    await asyncio.sleep(0.05)
        async with asyncio.timeout(5):
            while await listeners():
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()
