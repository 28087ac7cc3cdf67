"""Acks in groups, and acks held until an outcome is committed.

Dramatiq's Redis consumer acks each message with a script call of its own, a
round trip on the worker thread per job. Here the first thread to ack sends
every ack pending in one call; the others leave theirs to it and move on.

A message's ack may also be held (`GroupAckRedisBroker.hold_ack`): Ferry's
lifecycle records a job's outcome without making the thread wait for the
write, and releases the hold once the outcome is committed; the ack is sent
only then. So an ack still never runs ahead of the status it follows.

Safe because an ack only forgets a message whose outcome is already committed:
if the process dies before the call, Dramatiq re-delivers the message and the
claim skips it, exactly as when a worker dies between commit and ack.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, Protocol

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed

from ferry.queue.messages import JOBS_QUEUE, Outgoing

IDLE_POLL_MS = 50  # the longest an idle consumer sleeps between fetches

# Dramatiq's own ack (dispatch.lua), for many messages: forget a message's data
# only if this worker still holds it (maintenance may have handed it to another).
ACK_MANY = """
redis.call("zadd", KEYS[3], ARGV[2], ARGV[1])
for i = 3, #ARGV do
    if redis.call("srem", KEYS[1], ARGV[i]) > 0 then
        redis.call("hdel", KEYS[2], ARGV[i])
    end
end
"""


class FetchHooks(Protocol):
    """What a worker is told of the messages its consumers fetch and give back."""

    def fetched(self, message: dramatiq.MessageProxy) -> None:
        """On the consumer's thread, as it hands `message` to the worker threads."""

    def requeueing(self, messages: list[dramatiq.MessageProxy]) -> None:
        """Blocking, before messages no thread took return to the queue (at shutdown)."""

    def wanted(self) -> int:
        """How many messages a consumer should hold (it fetches no fewer than its
        prefetch)."""


class AckHold:
    """Keeps one message's ack back until `release()`."""

    __slots__ = ("_lock", "_released", "_then")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._released = False
        self._then: Callable[[], None] | None = None

    def release(self) -> None:
        with self._lock:
            self._released = True
            then, self._then = self._then, None
        if then is not None:
            then()

    def defer(self, ack: Callable[[], None]) -> bool:
        """Run `ack` on release; False if released already (ack now)."""
        with self._lock:
            if self._released:
                return False
            self._then = ack
            return True


class BundledJobs:
    """The jobs beyond the first of the messages of several jobs a worker holds
    (`ferry.worker.bundles`): they count against its prefetch, so that it holds no more
    jobs than with one a message, from the fetch until the ack, but for those its
    threads send back to the queue."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._extra: dict[str, int] = {}  # Redis message id -> its jobs still counted
        self.total = 0

    def fetched(self, message: dramatiq.MessageProxy) -> None:
        """On the consumer's thread (a message fetched again is counted once)."""
        extra = len(message.options.get("more", ()))
        if not extra:
            return
        message_id = message.options["redis_message_id"]
        with self._lock:
            self.total += extra - self._extra.get(message_id, 0)
            self._extra[message_id] = extra

    def sent_back(self, message: dramatiq.MessageProxy, count: int) -> None:
        """`count` of its jobs will not run on this worker's thread."""
        message_id = message.options["redis_message_id"]
        with self._lock:
            if (held := self._extra.get(message_id)) is not None:
                fewer = min(count, held)
                self._extra[message_id] = held - fewer
                self.total -= fewer

    def done(self, message: dramatiq.MessageProxy) -> None:
        """Acked or nacked."""
        with self._lock:
            self.total -= self._extra.pop(message.options["redis_message_id"], 0)


class GroupAckConsumer(_RedisConsumer):
    def __init__(
        self, broker: GroupAckRedisBroker, queue_name: str, prefetch: int, timeout: int
    ) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        namespace = broker.namespace
        self._keys = [
            f"{namespace}:__acks__.{broker.broker_id}.{queue_name}",  # Dramatiq's layout
            f"{namespace}:{queue_name}.msgs",
            broker.heartbeats_key,
        ]
        self._ack_many = broker.client.register_script(ACK_MANY)
        self._holds = broker.holds
        self._pending: deque[str] = deque()  # appends and pops are thread-safe
        self._sending = threading.Lock()
        self._send_scheduled = False
        self._bundled = broker.bundled if queue_name == JOBS_QUEUE else None

    @property
    def outstanding_message_count(self) -> int:
        count = int(super().outstanding_message_count)
        return count if self._bundled is None else count + self._bundled.total

    @property
    def prefetch(self) -> int:
        hooks = self.broker.fetch_hooks
        return self._prefetch if hooks is None else max(self._prefetch, hooks.wanted())

    @prefetch.setter
    def prefetch(self, value: int) -> None:
        self._prefetch = value

    def __next__(self) -> dramatiq.MessageProxy | None:
        message: dramatiq.MessageProxy | None = super().__next__()  # type: ignore[no-untyped-call]
        if message is not None and self._bundled is not None:
            self._bundled.fetched(message)
        hooks = self.broker.fetch_hooks
        if message is not None and hooks is not None:
            hooks.fetched(message)
        return message

    def requeue(self, messages: Iterable[dramatiq.MessageProxy]) -> None:
        messages = list(messages)
        if (hooks := self.broker.fetch_hooks) is not None:
            hooks.requeueing(messages)
        super().requeue(messages)  # type: ignore[no-untyped-call]

    def ack(self, message: dramatiq.MessageProxy) -> None:
        message_id = message.options["redis_message_id"]
        self.queued_message_ids.discard(message.message_id)
        self._done_with(message)
        hold = self._holds.pop(message_id, None)
        if hold is not None and hold.defer(partial(self._released, message_id)):
            return
        self._pending.append(message_id)
        self.send_pending()

    def nack(self, message: dramatiq.MessageProxy) -> None:
        self._holds.pop(message.options["redis_message_id"], None)
        self._done_with(message)
        super().nack(message)  # type: ignore[no-untyped-call]

    def _done_with(self, message: dramatiq.MessageProxy) -> None:
        if self._bundled is not None:
            self._bundled.done(message)

    def _released(self, message_id: str) -> None:
        """The hold's release: on the writer's event loop after its commit, or on a thread
        that waited for the commit (an async job's retry)."""
        self._pending.append(message_id)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a thread, which may wait for Redis: send from here
            self._send_in_background()
            return
        # Off the loop (the writer must not wait for Redis), and once for all the
        # releases of a commit: a send already scheduled takes this one too.
        if not self._send_scheduled:
            self._send_scheduled = True
            loop.run_in_executor(None, self._send_in_background)

    def _send_in_background(self) -> None:
        self._send_scheduled = False  # before reading: a later release schedules anew
        while self._pending:
            try:
                self.send_pending()
                return
            except ConnectionClosed as exc:
                self.logger.warning("sending acks failed (%s); trying again in 1 s", exc)
                time.sleep(1)

    def send_pending(self) -> None:
        # Whoever holds the lock sends ours too; it looks again after letting go,
        # so nothing appended meanwhile is left behind.
        while self._pending and self._sending.acquire(blocking=False):
            try:
                self._send()
            finally:
                self._sending.release()

    def _send(self) -> None:
        ids = [self._pending.popleft() for _ in range(len(self._pending))]
        try:
            self._ack_many(keys=self._keys, args=[self.broker.broker_id, current_millis(), *ids])
        except redis.ConnectionError as exc:
            self._pending.extendleft(reversed(ids))  # Dramatiq retries the ack: sent again
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]


class GroupAckRedisBroker(RedisBroker):
    """Dramatiq's Redis broker whose consumers ack in groups, and hold acks on request."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)  # type: ignore[no-untyped-call]
        self.holds: dict[str, AckHold] = {}  # Redis message id -> its hold
        self.bundled = BundledJobs()  # counted against the jobs queue's prefetch
        self.fetch_hooks: FetchHooks | None = None  # set by a worker process
        self._maintain_now = False

    @property
    def heartbeats_key(self) -> str:
        """Dramatiq's sorted set of when each broker (worker process) was last heard of."""
        return f"{self.namespace}:__heartbeats__"

    def maintain(self) -> None:
        """Blocking: run Dramatiq's maintenance now, which hands the messages a dead worker
        fetched and never acked back to the queue (otherwise it runs by chance, on one
        command in a thousand)."""
        self._maintain_now = True
        try:
            self.do_qsize(JOBS_QUEUE)  # any command: maintenance runs after it
        finally:
            self._maintain_now = False

    def _should_do_maintenance(self, command: str) -> int:
        return 1 if self._maintain_now else int(super()._should_do_maintenance(command))

    @property
    def consumer_class(self) -> Any:
        return GroupAckConsumer

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        # An idle consumer polls with a growing backoff up to `timeout` (the CLI's
        # worker timeout, 1 s): a job sent to an idle worker would wait for it.
        return super().consume(queue_name, prefetch, min(timeout, IDLE_POLL_MS))

    def enqueue_ready(self, messages: Sequence[Outgoing]) -> None:
        """At the head of Dramatiq's queue, in order, in one round trip (its layout: the
        data, and the id in the list), past any tenant's queue: for jobs that have had
        their turn and were taken from there (those of a bundle sent back for other
        threads), so that they keep their place before what was moved since."""
        if not messages:
            return
        queue = f"{self.namespace}:{JOBS_QUEUE}"
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(f"{queue}.msgs", mapping={m.redis_message_id: m.data for m in messages})
        pipe.lpush(queue, *(m.redis_message_id for m in reversed(messages)))
        pipe.execute()

    def hold_ack(self, message: dramatiq.MessageProxy) -> AckHold:
        """Keep `message`'s ack from Redis until the returned hold is released."""
        hold = self.holds[message.options["redis_message_id"]] = AckHold()
        return hold
