"""Prometheus metrics for the whole deployment, served by any API process.

Every process records into its own `Recorder` (thread-safe, nothing but dict
updates on the hot path); a flusher adds what accumulated to the shared store
once a second: one Redis hash of totals (HINCRBYFLOAT in one pipeline), or the
recorder's own memory on the embedded default. `GET /metrics` reads the store,
so whichever replica nginx picks, the numbers are the deployment's. Gauges
(live subscribers) are per process: each process writes its current values
with a timestamp, and the scrape sums those of processes seen recently.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

import redis.asyncio as aioredis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

log = logging.getLogger(__name__)

INSTANCE = f"{socket.gethostname()}:{os.getpid()}"
SEP = "|"  # between a metric's name and its label values (tenant ids cannot hold it)
GAUGE_STALE_S = 30

# name -> (help, label names); the histograms' buckets (seconds, or transitions).
COUNTERS = {
    "ferry_jobs_created": ("Jobs created", ("tenant", "type")),
    "ferry_jobs_finished": ("Jobs that ended, by final status", ("tenant", "type", "status")),
    "ferry_job_retries": ("Failed attempts that scheduled a retry", ("tenant", "type")),
    "ferry_live_subscribers_cut": (
        "Live subscribers cut for not reading (a write waited LIVE_WRITE_TIMEOUT_MS)",
        ("transport",),
    ),
}
HISTOGRAMS = {
    "ferry_job_duration_seconds": (
        "Time a job's handler ran, per attempt", ("type",),
        (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    ),
    "ferry_job_queue_wait_seconds": (
        "Time from a job being due to its claim by a worker", ("type",),
        (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    ),
    "ferry_bundle_jobs": (
        "Jobs one worker thread ran from a message of several (the rest went back to the queue)",
        ("type",), (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
    ),
    "ferry_batch_transitions": (
        "Status transitions written by one statement of the status writer", ("kind",),
        (1, 2, 4, 8, 16, 32, 64, 128, 256),
    ),
}  # fmt: skip
GAUGES = {"ferry_live_subscribers": ("Open live-event subscriptions", ("transport",))}


class Recorder:
    """What one process observed since its last flush."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: defaultdict[str, float] = defaultdict(float)
        self.gauges: defaultdict[str, float] = defaultdict(float)

    def inc(self, name: str, *labels: str, amount: float = 1) -> None:
        key = SEP.join((name, *labels))
        with self._lock:
            self._pending[key] += amount

    def observe(self, name: str, value: float, *labels: str) -> None:
        buckets = HISTOGRAMS[name][2]
        index = bisect_left(buckets, value)
        le = str(buckets[index]) if index < len(buckets) else "+Inf"
        with self._lock:
            self._pending[SEP.join((name + "_bucket", *labels, le))] += 1
            self._pending[SEP.join((name + "_sum", *labels))] += value
            self._pending[SEP.join((name + "_count", *labels))] += 1

    def gauge(self, name: str, *labels: str, amount: float) -> None:
        with self._lock:
            self.gauges[SEP.join((name, *labels))] += amount

    def drain(self) -> dict[str, float]:
        with self._lock:
            pending, self._pending = self._pending, defaultdict(float)
        return dict(pending)


# This process's recorder (the API and an in-process worker share it).
recorder = Recorder()


@runtime_checkable  # Litestar checks a dependency against its annotation
class MetricsStore(Protocol):
    async def add(self, totals: dict[str, float], gauges: dict[str, float]) -> None: ...

    async def read(self) -> tuple[dict[str, float], dict[str, float]]:
        """(totals, gauges summed over live processes)"""


class MemoryMetricsStore:
    """The embedded default: one process."""

    def __init__(self) -> None:
        self.totals: defaultdict[str, float] = defaultdict(float)
        self.gauges: dict[str, float] = {}

    async def add(self, totals: dict[str, float], gauges: dict[str, float]) -> None:
        for key, amount in totals.items():
            self.totals[key] += amount
        self.gauges = gauges

    async def read(self) -> tuple[dict[str, float], dict[str, float]]:
        return dict(self.totals), dict(self.gauges)


class RedisMetricsStore:
    def __init__(self, client: aioredis.Redis, namespace: str, instance: str) -> None:
        self.client = client
        self.totals_key = f"{namespace}:metrics:totals"
        self.gauges_key = f"{namespace}:metrics:gauges"
        self.instance = instance

    async def add(self, totals: dict[str, float], gauges: dict[str, float]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for key, amount in totals.items():
                pipe.hincrbyfloat(self.totals_key, key, amount)
            now = time.time()
            for key, value in gauges.items():
                pipe.hset(self.gauges_key, f"{self.instance}{SEP}{key}", f"{now} {value}")
            await pipe.execute()

    async def read(self) -> tuple[dict[str, float], dict[str, float]]:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.totals_key)
            pipe.hgetall(self.gauges_key)
            totals, gauges = await pipe.execute()
        fresh: defaultdict[str, float] = defaultdict(float)
        stale_before = time.time() - GAUGE_STALE_S
        for field, stamped in gauges.items():
            seen, value = stamped.decode().split()
            if float(seen) >= stale_before:  # a process that stopped reporting is gone
                fresh[field.decode().split(SEP, 1)[1]] += float(value)
        return {k.decode(): float(v) for k, v in totals.items()}, dict(fresh)


async def flush_every(recorder: Recorder, store: MetricsStore, seconds: float = 1.0) -> None:
    """The flusher: a service of its process's event loop."""
    while True:
        await asyncio.sleep(seconds)
        await flush(recorder, store)


async def flush(recorder: Recorder, store: MetricsStore) -> None:
    totals = recorder.drain()
    try:
        await store.add(totals, dict(recorder.gauges))
    except Exception:
        log.warning("metrics flush failed; keeping %d totals for the next one", len(totals))
        for key, amount in totals.items():  # give them back: counters never lose counts
            name, _, labels = key.partition(SEP)
            recorder.inc(name, *labels.split(SEP) if labels else (), amount=amount)


def families(
    totals: dict[str, float], gauges: dict[str, float], queue_depths: dict[str, int]
) -> Iterator[Metric]:
    """The Prometheus families of a store's snapshot."""
    rows = [(key.split(SEP)[0], key.split(SEP)[1:], value) for key, value in totals.items()]
    for name, (help_text, label_names) in COUNTERS.items():
        counter = CounterMetricFamily(name, help_text, labels=label_names)
        for row_name, labels, value in rows:
            if row_name == name:
                counter.add_metric(labels, value)
        yield counter
    for name, (help_text, label_names, buckets) in HISTOGRAMS.items():
        histogram = HistogramMetricFamily(name, help_text, labels=label_names)
        by_series: defaultdict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
        for row_name, labels, value in rows:
            if row_name == name + "_bucket":
                by_series[tuple(labels[:-1])][labels[-1]] = value
        for series, counts in sorted(by_series.items()):
            running, cumulative = 0.0, []
            for le in [*map(str, buckets), "+Inf"]:
                running += counts.get(le, 0.0)
                cumulative.append((le, running))
            total = totals.get(SEP.join((name + "_sum", *series)), 0.0)
            histogram.add_metric(list(series), cumulative, total)
        yield histogram
    for name, (help_text, label_names) in GAUGES.items():
        gauge = GaugeMetricFamily(name, help_text, labels=label_names)
        for key, value in gauges.items():
            gauge_name, *labels = key.split(SEP)
            if gauge_name == name:
                gauge.add_metric(labels, value)
        yield gauge
    depth = GaugeMetricFamily("ferry_queue_depth", "Messages waiting in a queue", labels=["queue"])
    for queue, count in queue_depths.items():
        depth.add_metric([queue], count)
    yield depth


class Snapshot:
    """A collector over one scrape's snapshot, for prometheus_client's exposition."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self.metrics
