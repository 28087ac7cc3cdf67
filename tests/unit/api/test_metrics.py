"""The metrics route's own families (`ferry.api.metrics`): the tenants' queues as gauges."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ferry.api.metrics import tenant_queue_families
from ferry.observability.metrics import Snapshot
from ferry.queue.fair.queue import TenantQueue


def test_tenant_queues_become_gauges() -> None:
    queues = [TenantQueue("a", 40, 2_500), TenantQueue("b", 0, 0)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(tenant_queue_families(queues)))
    samples = {
        (sample.name, sample.labels["tenant"]): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }
    assert samples == {
        ("ferry_tenant_waiting_jobs", "a"): 40.0,
        ("ferry_tenant_waiting_jobs", "b"): 0.0,
        ("ferry_tenant_oldest_wait_seconds", "a"): 2.5,
        ("ferry_tenant_oldest_wait_seconds", "b"): 0.0,
    }
