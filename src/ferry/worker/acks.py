"""Acks in groups: one Redis call for the acks of every message that finished together.

Dramatiq's Redis consumer acks each message with a script call of its own, a
round trip on the worker thread per job. Ferry's writer commits the outcomes of
a whole tick at once and wakes their threads together, so their acks arrive
together too: the first thread to ack sends what is pending in one call, the
others leave theirs to it and move on (group commit again, for acks).

Safe because an ack only forgets a message whose outcome is already committed:
if the process dies before the call, Dramatiq re-delivers the message and the
claim skips it, exactly as when a worker dies between commit and ack.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed

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


class GroupAckConsumer(_RedisConsumer):
    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        namespace = broker.namespace
        self._keys = [
            f"{namespace}:__acks__.{broker.broker_id}.{queue_name}",  # Dramatiq's layout
            f"{namespace}:{queue_name}.msgs",
            f"{namespace}:__heartbeats__",
        ]
        self._ack_many = broker.client.register_script(ACK_MANY)
        self._pending: deque[str] = deque()  # appends and pops are thread-safe
        self._sending = threading.Lock()

    def ack(self, message: dramatiq.MessageProxy) -> None:
        self._pending.append(message.options["redis_message_id"])
        self.queued_message_ids.discard(message.message_id)
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
    """Dramatiq's Redis broker whose consumers ack in groups."""

    @property
    def consumer_class(self) -> Any:
        return GroupAckConsumer
