"""`GET /metrics`: the deployment's metrics in Prometheus' text format."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from ferry.api.answers import TENANT_CHECKED
from ferry.api.auth import not_a_tenant_key
from ferry.api.dependencies import DbSession, Metrics, Sends
from ferry.db.pauses import all_pauses
from ferry.observability.metrics import Snapshot, families, flush, recorder
from ferry.queue.fair.broker import fair_queue
from ferry.queue.fair.queue import TenantQueue
from ferry.queue.messages import JOBS_QUEUE

log = logging.getLogger(__name__)
QUEUES = (JOBS_QUEUE, f"{JOBS_QUEUE}.DQ")  # ready, and delayed (retries, delayMs)


def queue_depths(broker: dramatiq.Broker) -> dict[str, int]:
    """Blocking: messages waiting in each queue (fetched ones are not counted), and on
    the fair broker those waiting in the tenants' queues (as `jobs.fair`)."""
    if isinstance(broker, RedisBroker):
        pipe = broker.client.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.llen(f"{broker.namespace}:{queue}")
        depths = dict(zip(QUEUES, map(int, pipe.execute()), strict=True))
        if (fair := fair_queue(broker)) is not None:
            depths[f"{JOBS_QUEUE}.fair"] = int(broker.client.hlen(fair.messages_key))
        return depths
    if isinstance(broker, StubBroker):
        return {queue: broker.queues[queue].qsize() for queue in QUEUES}
    return {}


def tenant_queue_families(queues: Iterable[TenantQueue]) -> Iterator[Metric]:
    """Fair scheduling: each waiting tenant's queue, read from Redis at scrape time."""
    waiting = GaugeMetricFamily(
        "ferry_tenant_waiting_jobs",
        "Jobs waiting in a tenant's queue for a turn",
        labels=["tenant"],
    )
    wait = GaugeMetricFamily(
        "ferry_tenant_oldest_wait_seconds",
        "How long the oldest job in a tenant's queue has waited",
        labels=["tenant"],
    )
    for queue in queues:
        waiting.add_metric([queue.tenant_id], queue.waiting)
        wait.add_metric([queue.tenant_id], queue.wait_ms / 1000)
    yield waiting
    yield wait


def paused_family(held: Iterable[tuple[str, str]]) -> Metric:
    """Each pause: 1 per paused tenant (`type="*"`) and paused job type of a tenant."""
    paused = GaugeMetricFamily(
        "ferry_tenant_paused",
        "A paused tenant (type *) or job type of a tenant: its jobs are held",
        labels=["tenant", "type"],
    )
    for tenant, job_type in sorted(held):
        paused.add_metric([tenant, job_type or "*"], 1)
    return paused


# Every tenant's numbers are here: a tenant key may not read them.
@get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["health"],
    guards=[not_a_tenant_key],
    media_type=CONTENT_TYPE_LATEST,
    raises=TENANT_CHECKED,
)
async def metrics(metrics: Metrics, sender: Sends, db_session: DbSession) -> Response[bytes]:
    await flush(recorder, metrics)  # this process's latest counts too
    totals, gauges = await metrics.read()
    depths = await asyncio.to_thread(queue_depths, sender.broker)
    snapshot = list(families(totals, gauges, depths))
    tenants = await sender.waiting()
    if tenants is not None:
        snapshot += tenant_queue_families(tenants)
    try:
        snapshot.append(paused_family(await all_pauses(db_session)))
    except Exception:  # the database is down: the rest still answers, from Redis
        log.warning("/metrics: the pauses could not be read", exc_info=True)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(snapshot))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
