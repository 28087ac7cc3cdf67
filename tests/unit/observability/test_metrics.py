"""Metrics: recording, totals across flushes, and the Prometheus families they make."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ferry.observability.metrics import MemoryMetricsStore, Recorder, Snapshot, families, flush


def exposition(
    totals: dict[str, float], gauges: dict[str, float], depths: dict[str, int]
) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(families(totals, gauges, depths)))
    parsed: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            parsed.setdefault(sample.name, []).append((sample.labels, sample.value))
    return parsed


async def test_counters_add_up_across_flushes() -> None:
    recorder, store = Recorder(), MemoryMetricsStore()
    recorder.inc("ferry_jobs_created", "t1", "sleep")
    recorder.inc("ferry_jobs_created", "t1", "sleep")
    await flush(recorder, store)
    recorder.inc("ferry_jobs_created", "t1", "sleep")
    recorder.inc("ferry_jobs_finished", "t2", "email", "FAILED")
    await flush(recorder, store)
    totals, _ = await store.read()
    samples = exposition(totals, {}, {})
    assert samples["ferry_jobs_created_total"] == [({"tenant": "t1", "type": "sleep"}, 3.0)]
    assert samples["ferry_jobs_finished_total"] == [
        ({"tenant": "t2", "type": "email", "status": "FAILED"}, 1.0)
    ]


async def test_histograms_are_cumulative_with_sum_and_count() -> None:
    recorder, store = Recorder(), MemoryMetricsStore()
    for seconds in (0.003, 0.02, 0.02, 7.0, 1000.0):
        recorder.observe("ferry_job_duration_seconds", seconds, "sleep")
    await flush(recorder, store)
    totals, _ = await store.read()
    samples = exposition(totals, {}, {})
    buckets = {
        labels["le"]: value for labels, value in samples["ferry_job_duration_seconds_bucket"]
    }
    assert (
        buckets["0.005"],
        buckets["0.025"],
        buckets["5"],
        buckets["10"],
        buckets["+Inf"],
    ) == (1, 3, 3, 4, 5)
    assert samples["ferry_job_duration_seconds_count"] == [({"type": "sleep"}, 5.0)]
    assert samples["ferry_job_duration_seconds_sum"][0][1] == sum((0.003, 0.02, 0.02, 7.0, 1000.0))


async def test_gauges_and_queue_depths() -> None:
    recorder, store = Recorder(), MemoryMetricsStore()
    recorder.gauge("ferry_live_subscribers", "websocket", amount=1)
    recorder.gauge("ferry_live_subscribers", "websocket", amount=1)
    recorder.gauge("ferry_live_subscribers", "websocket", amount=-1)
    recorder.gauge("ferry_live_subscribers", "sse", amount=1)
    await flush(recorder, store)
    totals, gauges = await store.read()
    samples = exposition(totals, gauges, {"jobs": 7})
    assert sorted(samples["ferry_live_subscribers"], key=str) == sorted(
        [({"transport": "websocket"}, 1.0), ({"transport": "sse"}, 1.0)], key=str
    )
    assert samples["ferry_queue_depth"] == [({"queue": "jobs"}, 7.0)]


async def test_a_failed_flush_keeps_its_counts() -> None:
    class Down(MemoryMetricsStore):
        async def add(self, totals: dict[str, float], gauges: dict[str, float]) -> None:
            raise ConnectionError("redis is down")

    recorder, store = Recorder(), MemoryMetricsStore()
    recorder.inc("ferry_jobs_created", "t", "sleep", amount=2)
    await flush(recorder, Down())
    await flush(recorder, store)
    totals, _ = await store.read()
    assert totals == {"ferry_jobs_created|t|sleep": 2.0}
