"""`GET /metrics`: the deployment's metrics in Prometheus' text format."""

from __future__ import annotations

import asyncio

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ferry.api.answers import TENANT_CHECKED
from ferry.auth import not_a_tenant_key
from ferry.fairness.broker import FairRedisBroker
from ferry.messages import JOBS_QUEUE
from ferry.metrics import Snapshot, families, flush, recorder, tenant_queue_families

QUEUES = (JOBS_QUEUE, f"{JOBS_QUEUE}.DQ")  # ready, and delayed (retries, delayMs)


def queue_depths(broker: dramatiq.Broker) -> dict[str, int]:
    """Blocking: messages waiting in each queue (fetched ones are not counted), and on
    the fair broker those waiting in the tenants' queues (as `jobs.fair`)."""
    if isinstance(broker, RedisBroker):
        pipe = broker.client.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.llen(f"{broker.namespace}:{queue}")
        depths = dict(zip(QUEUES, map(int, pipe.execute()), strict=True))
        if isinstance(broker, FairRedisBroker):
            depths[f"{JOBS_QUEUE}.fair"] = int(broker.client.hlen(broker.fair.messages_key))
        return depths
    if isinstance(broker, StubBroker):
        return {queue: broker.queues[queue].qsize() for queue in QUEUES}
    return {}


# Every tenant's numbers are here: a tenant key may not read them.
@get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["health"],
    guards=[not_a_tenant_key],
    media_type=CONTENT_TYPE_LATEST,
    raises=TENANT_CHECKED,
)
async def metrics(state: State) -> Response[bytes]:
    await flush(recorder, state.metrics)  # this process's latest counts too
    totals, gauges = await state.metrics.read()
    broker = state.dispatcher.broker
    depths = await asyncio.to_thread(queue_depths, broker)
    snapshot = list(families(totals, gauges, depths))
    if isinstance(broker, FairRedisBroker):
        tenants = await asyncio.to_thread(broker.fair.peek)
        snapshot += tenant_queue_families(tenants)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(snapshot))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
