"""Job events on Redis: one round trip publishes a whole tick's status changes.

Each event gets the next `seq` of its tenant (INCR), is appended to the
tenant's stream with the stream id `<seq>-0` (so a reconnecting subscriber
resumes with XRANGE from its Last-Event-ID), and is PUBLISHed on the tenant's
channel for live subscribers. All of it happens in one Lua script, so a tick
of any size costs one round trip and the seq order is the stream order.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import redis.asyncio as aioredis

from ferry.worker.transitions import JobEvent

# ARGV: key prefix, stream MAXLEN, then one JSON event per tenant-ordered pair.
_PUBLISH = """
local prefix, maxlen = ARGV[1], ARGV[2]
for i = 3, #ARGV, 2 do
  local tenant = ARGV[i]
  local event = cjson.decode(ARGV[i + 1])
  local seq = redis.call('INCR', prefix .. ':seq:' .. tenant)
  event['seq'] = seq
  local data = cjson.encode(event)
  local stream = prefix .. ':stream:' .. tenant
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, seq .. '-0', 'data', data)
  redis.call('PUBLISH', prefix .. ':live:' .. tenant, data)
end
return #ARGV / 2 - 1
"""


_encoder = msgspec.json.Encoder()


def encode(event: JobEvent) -> bytes:
    return _encoder.encode(event)


def stream_key(namespace: str, tenant_id: str) -> str:
    return f"{namespace}:events:stream:{tenant_id}"


def live_channel(namespace: str, tenant_id: str) -> str:
    return f"{namespace}:events:live:{tenant_id}"


class RedisEventPublisher:
    def __init__(self, client: aioredis.Redis, namespace: str, *, retain: int = 10_000) -> None:
        self.client = client
        self.prefix = f"{namespace}:events"
        self.retain = retain
        self._script = client.register_script(_PUBLISH)
        self.round_trips = 0

    async def publish(self, events: Sequence[JobEvent]) -> None:
        if not events:
            return
        args: list[str | bytes | int] = [self.prefix, self.retain]
        for event in events:
            args += [event.tenant_id, encode(event)]
        await self._script(args=args)
        self.round_trips += 1
