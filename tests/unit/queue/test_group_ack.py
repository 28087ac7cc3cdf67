"""Acks in groups and held acks (`ferry.queue.group_ack`) without Redis: the ack
script is a recording fake, the writer's event loop a fake that runs what is
handed to its executor when the test says so. The script itself runs on a real
Redis in tests/integration/queue/test_group_acks.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, cast

import dramatiq
import pytest
import redis
from dramatiq.errors import ConnectionClosed

from ferry.queue import group_ack
from ferry.queue.group_ack import AckHold, GroupAckConsumer, GroupAckRedisBroker

QUEUE = "jobs"
NAMESPACE = "unit"


class FakeAckScript:
    """The consumer's ACK_MANY script: records the ids of each call. It can refuse
    `fail` calls as a lost connection would, and hold a call until `go` is set."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.keys: list[list[str]] = []
        self.brokers: list[str] = []
        self.fail = 0
        self.hold = False
        self.entered = threading.Event()
        self.go = threading.Event()

    def __call__(self, keys: list[str], args: list[Any]) -> None:
        if self.hold:
            self.hold = False
            self.entered.set()
            assert self.go.wait(5)
        if self.fail:
            self.fail -= 1
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379")
        self.keys.append(keys)
        self.brokers.append(args[0])
        self.calls.append([str(message_id) for message_id in args[2:]])


class FakeLoop:
    """The writer's loop as `_released` sees it: what goes to its executor waits here."""

    def __init__(self) -> None:
        self.scheduled: list[Callable[[], None]] = []

    def run_in_executor(self, executor: None, function: Callable[[], None]) -> None:
        self.scheduled.append(function)

    def run_scheduled(self) -> None:
        scheduled, self.scheduled = self.scheduled, []
        for function in scheduled:
            function()


@pytest.fixture
def loop(monkeypatch: pytest.MonkeyPatch) -> FakeLoop:
    fake = FakeLoop()
    monkeypatch.setattr(group_ack, "asyncio", SimpleNamespace(get_running_loop=lambda: fake))
    return fake


@pytest.fixture
def broker() -> Iterator[GroupAckRedisBroker]:
    # A client that never connects: nothing here may reach a Redis.
    broker = GroupAckRedisBroker(url="redis://127.0.0.1:1/0", namespace=NAMESPACE)
    yield broker
    broker.client.close()


@pytest.fixture
def script() -> FakeAckScript:
    return FakeAckScript()


@pytest.fixture
def consumer(broker: GroupAckRedisBroker, script: FakeAckScript) -> GroupAckConsumer:
    consumer = broker.consume(QUEUE, prefetch=100)
    assert isinstance(consumer, GroupAckConsumer)
    consumer._ack_many = script
    return consumer


def messages(consumer: GroupAckConsumer, count: int) -> list[dramatiq.MessageProxy]:
    """Messages as if fetched by `consumer` (Redis ids r0, r1, ...)."""
    fetched = [
        SimpleNamespace(message_id=f"m{i}", options={"redis_message_id": f"r{i}"})
        for i in range(count)
    ]
    consumer.queued_message_ids.update(message.message_id for message in fetched)
    return cast(list[dramatiq.MessageProxy], fetched)


# -- the hold ---------------------------------------------------------------------------


def test_a_deferred_ack_runs_on_release_and_only_once() -> None:
    hold, acks = AckHold(), []
    assert hold.defer(lambda: acks.append("ack"))
    assert acks == []  # never before the release
    hold.release()
    assert acks == ["ack"]
    hold.release()  # a second release runs nothing again
    assert acks == ["ack"]


def test_a_hold_released_first_tells_the_caller_to_ack_itself() -> None:
    hold, acks = AckHold(), []
    hold.release()
    assert not hold.defer(lambda: acks.append("ack"))
    hold.release()
    assert acks == []  # the caller acks: the hold never runs it


# -- acks in groups ---------------------------------------------------------------------


def test_an_ack_with_no_hold_is_sent_at_once_with_dramatiqs_keys(
    consumer: GroupAckConsumer, broker: GroupAckRedisBroker, script: FakeAckScript
) -> None:
    [message] = messages(consumer, 1)
    consumer.ack(message)
    assert script.calls == [["r0"]]
    assert script.keys == [
        [
            f"{NAMESPACE}:__acks__.{broker.broker_id}.{QUEUE}",
            f"{NAMESPACE}:{QUEUE}.msgs",
            f"{NAMESPACE}:__heartbeats__",
        ]
    ]
    assert script.brokers == [broker.broker_id]
    assert consumer.outstanding_message_count == 0


def test_a_held_ack_waits_for_its_release_and_is_then_sent_off_the_loop(
    consumer: GroupAckConsumer, broker: GroupAckRedisBroker, script: FakeAckScript, loop: FakeLoop
) -> None:
    [message] = messages(consumer, 1)
    hold = broker.hold_ack(message)
    consumer.ack(message)  # the outcome is not committed yet
    assert script.calls == [] and loop.scheduled == []
    assert broker.holds == {}  # the hold has the ack now: nothing is left behind
    hold.release()  # on the writer's loop, after the commit
    assert script.calls == []  # not on the loop: the writer never waits for Redis
    assert len(loop.scheduled) == 1
    loop.run_scheduled()
    assert script.calls == [["r0"]]


def test_the_releases_of_one_commit_are_sent_together_and_later_ones_anew(
    consumer: GroupAckConsumer, broker: GroupAckRedisBroker, script: FakeAckScript, loop: FakeLoop
) -> None:
    fetched = messages(consumer, 6)
    holds = [broker.hold_ack(message) for message in fetched]
    for message in fetched:
        consumer.ack(message)
    for hold in holds[:5]:  # one commit releases the holds of its outcomes
        hold.release()
    assert len(loop.scheduled) == 1  # one send for all of them
    loop.run_scheduled()
    assert script.calls == [["r0", "r1", "r2", "r3", "r4"]]
    holds[5].release()  # the next commit's
    assert len(loop.scheduled) == 1
    loop.run_scheduled()
    assert script.calls == [["r0", "r1", "r2", "r3", "r4"], ["r5"]]


def test_a_hold_released_before_dramatiq_acks_lets_the_ack_go_at_once(
    consumer: GroupAckConsumer, broker: GroupAckRedisBroker, script: FakeAckScript, loop: FakeLoop
) -> None:
    [message] = messages(consumer, 1)
    broker.hold_ack(message).release()  # a fast commit
    consumer.ack(message)
    assert script.calls == [["r0"]] and loop.scheduled == []
    assert broker.holds == {}


def test_a_nacked_message_drops_its_hold_and_is_never_acked(
    consumer: GroupAckConsumer,
    broker: GroupAckRedisBroker,
    script: FakeAckScript,
    loop: FakeLoop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nacked: list[tuple[str, str]] = []
    monkeypatch.setattr(
        broker, "do_nack", lambda queue, message_id: nacked.append((queue, message_id))
    )
    [message] = messages(consumer, 1)
    hold = broker.hold_ack(message)
    consumer.nack(message)
    assert nacked == [(QUEUE, "r0")] and broker.holds == {}
    hold.release()
    loop.run_scheduled()
    assert script.calls == [] and loop.scheduled == []


def test_acks_that_arrive_during_a_send_go_out_in_the_next_one(
    consumer: GroupAckConsumer, script: FakeAckScript
) -> None:
    """The first thread to ack sends; the others leave theirs to it and move on."""
    first, *others = messages(consumer, 10)
    script.hold = True
    sender = threading.Thread(target=consumer.ack, args=(first,))
    sender.start()
    try:
        assert script.entered.wait(5)  # its call is in flight
        for message in others:
            consumer.ack(message)  # returns at once: the thread in flight sends it
        assert script.calls == []
    finally:
        script.go.set()
        sender.join(5)
    assert script.calls == [["r0"], [f"r{i}" for i in range(1, 10)]]


def test_acks_a_lost_connection_refused_are_sent_again_in_order(
    consumer: GroupAckConsumer, script: FakeAckScript
) -> None:
    first, second = messages(consumer, 2)
    script.fail = 1
    with pytest.raises(ConnectionClosed):  # Dramatiq logs it; the ack is kept
        consumer.ack(first)
    assert script.calls == []
    consumer.ack(second)
    assert script.calls == [["r0", "r1"]]


def test_a_send_off_the_loop_tries_again_until_redis_answers(
    consumer: GroupAckConsumer,
    broker: GroupAckRedisBroker,
    script: FakeAckScript,
    loop: FakeLoop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(group_ack, "time", SimpleNamespace(sleep=waits.append))
    fetched = messages(consumer, 3)
    holds = [broker.hold_ack(message) for message in fetched]
    for message in fetched:
        consumer.ack(message)
    script.fail = 3
    for hold in holds:
        hold.release()
    loop.run_scheduled()
    assert script.calls == [["r0", "r1", "r2"]]  # all of them, in their order
    assert waits == [1, 1, 1]


def test_a_hold_released_on_a_thread_sends_the_ack_from_that_thread(
    consumer: GroupAckConsumer, broker: GroupAckRedisBroker, script: FakeAckScript
) -> None:
    # An async job's retry is recorded on a thread that waits for the commit: no loop
    # runs there, and the ack goes out at once.
    [message] = messages(consumer, 1)
    hold = broker.hold_ack(message)
    consumer.ack(message)
    assert script.calls == []
    hold.release()
    assert script.calls == [["r0"]]


# -- what the worker is told ---------------------------------------------------------


class Hooks:
    def __init__(self, wanted: int) -> None:
        self._wanted = wanted
        self.seen: list[str] = []

    def fetched(self, message: dramatiq.MessageProxy) -> None:
        self.seen.append(f"fetched {message.options['redis_message_id']}")

    def requeueing(self, messages: list[dramatiq.MessageProxy]) -> None:
        self.seen.append(f"requeueing {len(messages)}")

    def wanted(self) -> int:
        return self._wanted


def test_the_worker_hears_of_each_fetched_message_and_of_requeues_before_they_happen(
    consumer: GroupAckConsumer, broker: GroupAckRedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = broker.fetch_hooks = Hooks(wanted=0)
    fetched = messages(consumer, 2)
    batches = iter([[message.encode() for message in sent(fetched)], []])
    monkeypatch.setattr(broker, "do_fetch", lambda queue, count: next(batches))
    got = [consumer.__next__() for _ in fetched]
    assert [message and message.options["redis_message_id"] for message in got] == ["r0", "r1"]
    assert consumer.__next__() is None  # nothing more: nothing told
    monkeypatch.setattr(
        broker, "do_requeue", lambda queue, *ids: hooks.seen.append(f"requeued {len(ids)}")
    )
    consumer.requeue(iter(fetched))
    assert hooks.seen == ["fetched r0", "fetched r1", "requeueing 2", "requeued 2"]


def test_a_consumer_fetches_what_the_worker_wants_and_never_less_than_dramatiq(
    consumer: GroupAckConsumer, broker: GroupAckRedisBroker
) -> None:
    assert consumer.prefetch == 100  # as created: no worker told it anything
    broker.fetch_hooks = Hooks(wanted=160)
    assert consumer.prefetch == 160
    broker.fetch_hooks = Hooks(wanted=40)
    assert consumer.prefetch == 100


def sent(fetched: list[dramatiq.MessageProxy]) -> list[dramatiq.Message]:  # type: ignore[type-arg]
    """Real messages with the Redis ids of `fetched`, as the fetch script returns them."""
    return [
        dramatiq.Message(
            queue_name=QUEUE,
            actor_name="a",
            args=(),
            kwargs={},
            options={"redis_message_id": message.options["redis_message_id"]},
        )
        for message in fetched
    ]


# -- the prefetch counts jobs -----------------------------------------------------------


def test_a_message_of_several_jobs_counts_as_each_of_them_until_acked(
    consumer: GroupAckConsumer, script: FakeAckScript
) -> None:
    bundle: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=QUEUE, actor_name="sleep", args=("j0",), kwargs={},
        options={"redis_message_id": "r0", "tenant": "a", "more": ["j1", "j2"]},
    )  # fmt: skip
    single = bundle.copy(message_id="m1", options={"redis_message_id": "r1", "more": []})
    single.options.pop("more")
    consumer.message_cache = [bundle.encode(), single.encode()]
    assert consumer.outstanding_message_count == 2  # fetched, not yet handed out
    first, second = next(consumer), next(consumer)
    assert first is not None and second is not None
    assert consumer.outstanding_message_count == 4  # 3 jobs and 1: the prefetch holds jobs
    consumer.ack(first)
    assert consumer.outstanding_message_count == 1
    consumer.ack(second)
    assert consumer.outstanding_message_count == 0


def test_a_bundle_fetched_again_counts_once_and_jobs_sent_back_stop_counting() -> None:
    bundled = group_ack.BundledJobs()
    message = cast(
        dramatiq.MessageProxy,
        SimpleNamespace(options={"redis_message_id": "r0", "more": ["j1", "j2", "j3"]}),
    )
    bundled.fetched(message)
    bundled.fetched(message)  # handed back by Dramatiq's maintenance, fetched again
    assert bundled.total == 3
    bundled.sent_back(message, 2)  # its thread runs two of its four jobs
    assert bundled.total == 1
    bundled.sent_back(message, 5)  # never below nothing
    assert bundled.total == 0
    bundled.done(message)
    assert bundled.total == 0
