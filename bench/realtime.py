"""Live-event benchmarks, each in a fresh process: `python -m bench.realtime SCENARIO ...`.

- latency: one API process and one worker process (`dramatiq`, 1 process);
  one WebSocket and one SSE subscriber of a tenant; jobs created one by one at
  a steady rate. Per event: arrival time minus `at`, the transition's
  timestamp (taken as the transition is written, so the commit is included).
- fanout: M WebSocket subscribers over K tenants on one API process while
  jobs are created at R jobs/s (a batch every 100 ms, spread over the
  tenants) for S seconds; every subscriber must get every event of its tenant.
- redis: the baseline: the same fan-out straight from Redis pub/sub to M
  redis-py subscribers at the same event rate (what Ferry adds is the hop
  through the API process and its feeds).
- stalled: the fan-out of M WebSocket subscribers over K tenants, beside N
  WebSockets that subscribe to the same tenants and then never read again (raw
  sockets: their kernel's receive buffer fills, then the server's send buffer)
  and one SSE client that never reads; the good subscribers' latencies, the
  latency of each batch create, the API's peak memory and how many
  subscribers it cut. N = 0: the same fan-out alone.
- readers: the control: the same, but the N sockets and the SSE client read
  (and throw away) everything.
Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import redis
import redis.asyncio as aioredis
import uvloop
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from bench.services import REDIS_URL, log_directory
from bench.stats import percentile
from tests.support.live import StalledSocket, Stream, stream
from tests.support.processes import PROJECT_ROOT, api_process, ferry_env, worker_process

DATA = b"data: "


class Update(msgspec.Struct):
    seq: int
    at: datetime
    type: str = "JOB_UPDATE"


_decode = msgspec.json.Decoder(Update).decode


class Arrivals:
    """Latencies (ms) of every event received, and anything unexpected."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.resyncs = 0
        self.gaps = 0  # events a subscriber's seq skipped over

    def record(self, data: bytes | str, last_seq: int | None = None) -> int:
        update = _decode(data)
        if update.type == "RESYNC":
            self.resyncs += 1
            return update.seq
        self.latencies.append((time.time() - update.at.timestamp()) * 1000)
        if last_seq is not None and update.seq != last_seq + 1:
            self.gaps += 1
        return update.seq

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.latencies) or [float("nan")]
        return {
            "events": len(self.latencies),
            "p50_ms": statistics.median(ordered),
            "p99_ms": percentile(ordered, 0.99),
            "max_ms": ordered[-1],
            "resyncs": self.resyncs,
            "gaps": self.gaps,
        }


@contextmanager
def ferry_stack(
    namespace: str, database_url: str, workers: int = 1, **settings: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """One API process and `dramatiq` with `workers` worker processes; yields the API's base
    URL and the `dramatiq` process."""
    env = stack_env(namespace, database_url, **settings)
    with ExitStack() as stack:
        logs = stack.enter_context(log_directory())
        base = stack.enter_context(api_process(env, PROJECT_ROOT, logs / "api.log"))
        worker = stack.enter_context(
            worker_process(env, logs / "worker.log", threads=32, processes=workers)
        )
        wait_for_consumer(namespace, workers)
        yield base, worker


def stack_env(namespace: str, database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a bench's Ferry processes, on its database and Redis namespace."""
    return ferry_env(
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        REDIS_NAMESPACE=namespace,
        LOG_LEVEL="WARNING",
        **settings,
    )


def wait_for_consumer(namespace: str, workers: int = 1, within_s: float = 60) -> None:
    """Until `workers` worker processes fetch: Dramatiq records each one's heartbeat on
    every fetch. The clock of a run must not count the workers' boot."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        deadline = time.monotonic() + within_s
        while client.zcard(f"{namespace}:__heartbeats__") < workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: no worker fetched within {within_s:.0f} s")
            time.sleep(0.05)
    finally:
        client.close()


async def ws_subscriber(base: str, tenant: str, arrivals: Arrivals) -> ClientConnection:
    ws = await connect(base.replace("http", "ws") + "/ws", open_timeout=30, max_queue=None)
    await ws.recv()  # CONNECTED
    await ws.send(json.dumps({"type": "SUBSCRIBE", "tenantId": tenant}))
    subscribed = json.loads(await ws.recv())
    assert subscribed["type"] == "SUBSCRIBED", subscribed
    return ws


async def ws_receive(ws: ClientConnection, arrivals: Arrivals, seq: int = 0) -> None:
    async for message in ws:
        seq = arrivals.record(message, seq)


async def sse_receive(
    client: httpx.AsyncClient, tenant: str, arrivals: Arrivals, ready: asyncio.Event
) -> None:
    async with client.stream("GET", "/events", params={"tenantId": tenant}) as response:
        ready.set()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                arrivals.record(line[6:])


async def wait_until(condition: Any, within_s: float) -> None:
    """Poll `condition` (receivers count events; they signal nothing)."""
    deadline = time.monotonic() + within_s
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def latency(base: str, jobs: int, rate: float) -> dict[str, Any]:
    tenant = "latency"
    over_ws, over_sse = Arrivals(), Arrivals()
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        ws = await ws_subscriber(base, tenant, over_ws)
        ready = asyncio.Event()
        tasks = [
            asyncio.create_task(ws_receive(ws, over_ws)),
            asyncio.create_task(sse_receive(client, tenant, over_sse, ready)),
        ]
        await ready.wait()
        body = {"tenantId": tenant, "type": "sleep", "payload": {"delayMs": 0}}
        for _ in range(jobs):
            (await client.post("/jobs", json=body)).raise_for_status()
            await asyncio.sleep(1 / rate)
        expected = 3 * jobs
        await wait_until(
            lambda: min(len(over_ws.latencies), len(over_sse.latencies)) >= expected, 60
        )
        for task in tasks:
            task.cancel()
        await ws.close()
    return {"expected": expected, "ws": over_ws.summary(), "sse": over_sse.summary()}


async def produce(
    base: str, tenants: list[str], rate: int, seconds: float, create_ms: list[float] | None = None
) -> dict[str, int]:
    """Create `rate` jobs/s for `seconds`, round-robin over `tenants`; jobs per tenant
    (and the latency of each batch create in `create_ms`)."""
    per_tick, created = max(1, rate // 10), dict.fromkeys(tenants, 0)
    sent = 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        start = time.monotonic()
        tick = 0
        while time.monotonic() - start < seconds:
            batch = []
            for _ in range(per_tick):
                tenant = tenants[sent % len(tenants)]
                created[tenant] += 1
                sent += 1
                batch.append({"tenantId": tenant, "type": "sleep", "payload": {"delayMs": 0}})
            sent_at = time.monotonic()
            (await client.post("/jobs/batch", json={"jobs": batch})).raise_for_status()
            if create_ms is not None:
                create_ms.append((time.monotonic() - sent_at) * 1000)
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * 0.1 - time.monotonic()))
    return created


async def fanout(
    base: str, subscribers: int, tenants: int, rate: int, seconds: float
) -> dict[str, Any]:
    names = [f"tenant-{i}" for i in range(tenants)]
    arrivals = Arrivals()
    sockets: list[ClientConnection] = []
    for start in range(0, subscribers, 50):  # connect in waves, as clients would
        sockets += await asyncio.gather(
            *[
                ws_subscriber(base, names[i % tenants], arrivals)
                for i in range(start, min(start + 50, subscribers))
            ]
        )
    receivers = [asyncio.create_task(ws_receive(ws, arrivals)) for ws in sockets]
    began = time.monotonic()
    created = await produce(base, names, rate, seconds)
    produced_s = time.monotonic() - began
    expected = sum(3 * created[names[i % tenants]] for i in range(subscribers))
    await wait_until(lambda: len(arrivals.latencies) >= expected, 60)
    for task in receivers:
        task.cancel()
    await asyncio.gather(*[ws.close() for ws in sockets], return_exceptions=True)
    jobs = sum(created.values())
    return {
        "expected": expected,
        "jobs_per_s": jobs / produced_s,
        "deliveries_per_s": expected / produced_s,
        **arrivals.summary(),
    }


async def crowded_fanout(
    base: str, subscribers: int, tenants: int, rate: int, seconds: float, others: int, read: bool
) -> dict[str, Any]:
    """`fanout` beside `others` WebSockets and one SSE client of the same tenants that
    never read (or, with `read`, the control: they read and discard everything)."""
    names = [f"tenant-{i}" for i in range(tenants)]
    arrivals = Arrivals()
    async with httpx.AsyncClient(base_url=base) as client:
        api_pid = int((await client.get("/health")).json()["instance"].rsplit(":", 1)[1])
    sockets: list[ClientConnection] = []
    for start in range(0, subscribers, 50):
        sockets += await asyncio.gather(
            *[
                ws_subscriber(base, names[i % tenants], arrivals)
                for i in range(start, min(start + 50, subscribers))
            ]
        )
    receivers = [asyncio.create_task(ws_receive(ws, arrivals)) for ws in sockets]
    # Raw sockets offering permessage-deflate, as browsers do.
    crowd = await asyncio.to_thread(
        lambda: [StalledSocket.subscribed(base, names[i % tenants]) for i in range(others)]
    )
    stop_reading = threading.Event()
    reader = threading.Thread(target=discard_all, args=(crowd, stop_reading), daemon=True)
    if read:
        reader.start()
    create_ms: list[float] = []
    rss_peak = 0.0

    async def sample_rss() -> None:
        nonlocal rss_peak
        while True:
            rss_peak = max(rss_peak, rss_mib(api_pid))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample_rss())
    try:
        async with AsyncExitStack() as stack:
            if others:  # an SSE client that reads its first event (then nothing, unless `read`)
                sse = await stack.enter_async_context(stream(base, names[0]))
                if read:
                    receivers.append(asyncio.create_task(sse_discard(sse)))
            began = time.monotonic()
            created = await produce(base, names, rate, seconds, create_ms)
            produced_s = time.monotonic() - began
            expected = sum(3 * created[names[i % tenants]] for i in range(subscribers))
            await wait_until(lambda: len(arrivals.latencies) >= expected, 60)
            rss_end = rss_mib(api_pid)
            async with httpx.AsyncClient(base_url=base) as client:
                cut = cut_subscribers((await client.get("/metrics")).text)
    finally:
        sampler.cancel()
        stop_reading.set()
        for task in receivers:
            task.cancel()
        await asyncio.gather(*[ws.close() for ws in sockets], return_exceptions=True)
        if reader.is_alive():
            await asyncio.to_thread(reader.join)
        for each in crowd:
            each.close()
    return {
        "expected": expected,
        "jobs_per_s": sum(created.values()) / produced_s,
        **arrivals.summary(),
        "create_p50_ms": statistics.median(create_ms),
        "create_p99_ms": percentile(create_ms, 0.99),
        "create_max_ms": max(create_ms),
        "api_rss_peak_mib": max(rss_peak, rss_end),
        "cut": cut,
    }


def discard_all(crowd: list[StalledSocket], stop: threading.Event) -> None:
    """Read whatever arrives on the sockets and throw it away, until `stop`."""
    with selectors.DefaultSelector() as selector:
        for each in crowd:
            each.sock.setblocking(False)
            selector.register(each.sock, selectors.EVENT_READ)
        while not stop.is_set() and selector.get_map():
            for key, _ in selector.select(0.2):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    if sock.recv(1 << 16):
                        continue
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                selector.unregister(sock)


async def sse_discard(sse: Stream) -> None:
    async for _ in sse.events:
        pass


def rss_mib(pid: int) -> float:
    """A process's resident memory, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(
        int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")
    )


def cut_subscribers(metrics: str) -> float:
    """Subscribers the API cut for not reading, from its `/metrics`."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "ferry_live_subscribers_cut"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


async def redis_fanout(
    namespace: str, subscribers: int, tenants: int, rate: int, seconds: float
) -> dict[str, Any]:
    """The baseline: the same events, straight from Redis pub/sub to redis-py subscribers."""
    arrivals = Arrivals()
    clients = [aioredis.Redis.from_url(REDIS_URL) for _ in range(subscribers)]
    channels = [f"{namespace}:baseline:{i % tenants}" for i in range(subscribers)]
    pubsubs = [client.pubsub() for client in clients]
    for pubsub, channel in zip(pubsubs, channels, strict=True):
        await pubsub.subscribe(channel)

    async def receive(pubsub: Any) -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                arrivals.record(message["data"])

    receivers = [asyncio.create_task(receive(pubsub)) for pubsub in pubsubs]
    publisher = aioredis.Redis.from_url(REDIS_URL)
    events_per_tick = max(1, 3 * rate // 100)  # every 10 ms: about as smooth as a worker's ticks
    published: dict[int, int] = dict.fromkeys(range(tenants), 0)
    start, tick, seq = time.monotonic(), 0, 0
    while time.monotonic() - start < seconds:
        async with publisher.pipeline(transaction=False) as pipe:
            for _ in range(events_per_tick):
                tenant = seq % tenants
                seq += 1
                published[tenant] += 1
                at = datetime.now().astimezone().isoformat()
                pipe.publish(f"{namespace}:baseline:{tenant}", json.dumps({"seq": seq, "at": at}))
            await pipe.execute()
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * 0.01 - time.monotonic()))
    produced_s = time.monotonic() - start
    expected = sum(published[i % tenants] for i in range(subscribers))
    await wait_until(lambda: len(arrivals.latencies) >= expected, 60)
    for task in receivers:
        task.cancel()
    for client in [*clients, publisher]:
        await client.aclose()
    return {"expected": expected, "deliveries_per_s": expected / produced_s, **arrivals.summary()}


def main() -> None:
    scenario, *rest, namespace, database_url = sys.argv[1:]
    numbers = [float(value) for value in rest]
    if scenario == "redis":
        subscribers, tenants, rate, seconds = numbers
        coroutine: Any = redis_fanout(namespace, int(subscribers), int(tenants), int(rate), seconds)
        print(json.dumps(uvloop.run(coroutine)))
        return
    with ferry_stack(namespace, database_url) as (base, _):
        if scenario == "latency":
            jobs, rate = numbers
            coroutine = latency(base, int(jobs), rate)
        elif scenario in ("stalled", "readers"):
            subscribers, tenants, rate, seconds, others = numbers
            coroutine = crowded_fanout(
                base,
                int(subscribers),
                int(tenants),
                int(rate),
                seconds,
                int(others),
                read=scenario == "readers",
            )
        else:
            subscribers, tenants, rate, seconds = numbers
            coroutine = fanout(base, int(subscribers), int(tenants), int(rate), seconds)
        print(json.dumps(uvloop.run(coroutine)))


if __name__ == "__main__":
    main()
