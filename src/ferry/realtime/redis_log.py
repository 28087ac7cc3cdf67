"""The event log on Redis: a counter, a stream and a channel per tenant.

One Lua script appends a whole batch: per event it INCRs the tenant's seq,
XADDs the event to the tenant's stream under the id `<seq>-0` (so `read` is an
XRANGE from the subscriber's last seq), and PUBLISHes it on the tenant's channel.
A script runs atomically, so the seq order is the publish order everywhere,
and a worker's whole tick costs one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from ferry.realtime.event import JobEvent, encode, seq_of

# ARGV: key prefix, stream MAXLEN, stream TTL (s, 0: none), then tenant/event pairs.
# The seq goes first in the event (`ferry.realtime.event.with_seq` does the same).
# The channel is `ferry.realtime.event.channel_name`. If the stream outlived its
# counter (someone deleted the key), XADD refuses the smaller id: drop the stale
# history, since those seqs are being reused, and start it again.
_APPEND = """
local prefix, maxlen, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
for i = 4, #ARGV, 2 do
  local tenant = ARGV[i]
  local seq = redis.call('INCR', prefix .. ':seq:' .. tenant)
  local data = '{"seq":' .. seq .. ',' .. string.sub(ARGV[i + 1], 2)
  local stream = prefix .. ':stream:' .. tenant
  local id = seq .. '-0'
  local added = redis.pcall('XADD', stream, 'MAXLEN', '~', maxlen, id, 'data', data)
  if type(added) == 'table' and added.err then
    redis.call('DEL', stream)
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, id, 'data', data)
  end
  if ttl > 0 then redis.call('EXPIRE', stream, ttl) end
  redis.call('PUBLISH', prefix .. ':live:' .. tenant, data)
end
return (#ARGV - 3) / 2
"""


class RedisEventLog:
    def __init__(
        self, client: aioredis.Redis, namespace: str, *, retain: int, ttl_s: int = 0
    ) -> None:
        self.client = client
        self.prefix = f"{namespace}:events"
        self.retain = retain
        self.ttl_s = ttl_s
        self._append = client.register_script(_APPEND)
        self.round_trips = 0  # appends, for benchmarks

    def _stream(self, tenant_id: str) -> str:
        return f"{self.prefix}:stream:{tenant_id}"

    def _seq(self, tenant_id: str) -> str:
        return f"{self.prefix}:seq:{tenant_id}"

    async def append(self, events: Sequence[JobEvent]) -> None:
        if not events:
            return
        args: list[str | bytes | int] = [self.prefix, self.retain, self.ttl_s]
        for event in events:
            args += [event.tenant_id, encode(event)]
        await self._append(args=args)
        self.round_trips += 1

    async def read(self, tenant_id: str, after: int, limit: int) -> list[bytes] | None:
        # One transaction: the range and the counter must describe the same moment.
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xrange(self._stream(tenant_id), f"({after}-0", "+", count=limit)
            pipe.get(self._seq(tenant_id))
            entries, latest = await pipe.execute()
        events: list[bytes] = [fields[b"data"] for _, fields in entries]
        if events:
            return events if seq_of(events[0]) == after + 1 else None
        return [] if int(latest or 0) == after else None

    async def current(self, tenant_id: str) -> int:
        return int(await self.client.get(self._seq(tenant_id)) or 0)
