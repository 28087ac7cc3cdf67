"""Acks in groups (`ferry.queue.group_ack`) on a real Redis, with Dramatiq's own key layout."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import dramatiq
import pytest

from ferry.queue.group_ack import IDLE_POLL_MS, GroupAckConsumer, GroupAckRedisBroker
from tests.support.services import TEST_REDIS_URL, redis_namespace

QUEUE = "acks"


@pytest.fixture
def broker() -> Iterator[GroupAckRedisBroker]:
    with redis_namespace() as namespace:
        broker = GroupAckRedisBroker(url=TEST_REDIS_URL, namespace=namespace)
        broker.declare_queue(QUEUE)
        yield broker
        broker.client.close()


def fetch(
    broker: GroupAckRedisBroker, count: int
) -> tuple[GroupAckConsumer, list[dramatiq.MessageProxy]]:
    for i in range(count):
        broker.enqueue(
            dramatiq.Message(queue_name=QUEUE, actor_name="a", args=(i,), kwargs={}, options={})
        )
    consumer = broker.consume(QUEUE, prefetch=count)
    assert isinstance(consumer, GroupAckConsumer)
    messages = [message for message in iter(consumer.__next__, None)]
    assert len(messages) == count
    return consumer, messages


def test_acks_from_many_threads_at_once_all_reach_redis(broker: GroupAckRedisBroker) -> None:
    consumer, messages = fetch(broker, 500)
    acks_key = f"{broker.namespace}:__acks__.{broker.broker_id}.{QUEUE}"
    assert broker.client.scard(acks_key) == 500  # fetched, not acked: Dramatiq's layout
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(consumer.ack, messages))
    assert broker.client.scard(acks_key) == 0
    assert broker.client.hlen(f"{broker.namespace}:{QUEUE}.msgs") == 0
    assert consumer.outstanding_message_count == 0


def test_a_message_the_worker_no_longer_holds_keeps_its_data(broker: GroupAckRedisBroker) -> None:
    """Maintenance may hand a presumed-dead worker's message to another worker; a late
    ack from the first must not delete the data the second is about to fetch."""
    consumer, messages = fetch(broker, 2)
    taken = messages[0].options["redis_message_id"]
    broker.client.srem(f"{broker.namespace}:__acks__.{broker.broker_id}.{QUEUE}", taken)
    for message in messages:
        consumer.ack(message)
    data = f"{broker.namespace}:{QUEUE}.msgs"
    assert broker.client.hlen(data) == 1 and broker.client.hexists(data, taken)


async def test_a_held_ack_is_sent_when_its_hold_is_released(broker: GroupAckRedisBroker) -> None:
    consumer, (held, early) = fetch(broker, 2)
    data = f"{broker.namespace}:{QUEUE}.msgs"
    hold = broker.hold_ack(held)
    consumer.ack(held)  # the outcome is not committed yet: the ack waits
    assert broker.client.hexists(data, held.options["redis_message_id"])
    hold.release()  # on the writer's loop, once committed: sent off the loop
    for _ in range(100):
        if not broker.client.hexists(data, held.options["redis_message_id"]):
            break
        await asyncio.sleep(0.01)
    assert not broker.client.hexists(data, held.options["redis_message_id"])
    # Released before Dramatiq acks (a fast commit): the ack goes at once.
    broker.hold_ack(early).release()
    consumer.ack(early)
    assert broker.client.hlen(data) == 0
    assert consumer.outstanding_message_count == 0


def test_an_idle_consumer_polls_at_least_every_idle_poll(broker: GroupAckRedisBroker) -> None:
    """Dramatiq's idle consumer backs off up to the worker timeout (1 s from the CLI):
    a job sent to an idle worker would wait that long to be fetched."""
    assert broker.consume(QUEUE, prefetch=1, timeout=1000).timeout == IDLE_POLL_MS < 1000
    assert broker.consume(QUEUE, prefetch=1, timeout=10).timeout == 10
