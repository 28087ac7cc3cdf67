"""The event log on Redis: a counter, a stream and a channel per tenant.

One Lua script appends a whole batch: it takes each tenant's seqs in one
INCRBY, XADDs each event to its tenant's stream under the id `<seq>-0` (so
`read` is an XRANGE from the subscriber's last seq), and PUBLISHes the
tenant's events on its channel, up to `per_message` of them a message
(`ferry.events.event.published`).
A script runs atomically, so the seq order is the publish order everywhere,
and a worker's whole tick costs one round trip. The events of each committed
change come with its mark (its outbox row's id, `ferry.db.outbox`): the script
sets the mark and appends them only if it was not set yet, so the committer and
the recovery pass never both append them.

A progress event (`ProgressEvent`) takes the tenant's progress counter instead,
and is only PUBLISHed, with the tenant's seq at that moment as its `after`: it
leaves no hole in `seq` and no entry in the stream.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import redis.asyncio as aioredis

from ferry.events.event import encode, seq_of
from ferry.events.log import EVENTS_PER_MESSAGE, MARK_TTL_MS, Committed

# ARGV: key prefix, stream MAXLEN, stream TTL (s, 0: none), mark TTL (ms), events a
# message, then groups: a mark ('' for none), the number of events N, N tenant/event pairs.
# A group whose mark is set already was appended before (by its committer or by
# the recovery pass): it is skipped. Each tenant's seqs of the whole call are
# taken in one INCRBY, and each stream's TTL set once. The seq goes first in the event
# (`ferry.events.event.with_seq` does the same). The channel is
# `ferry.events.event.channel_name`. If the stream outlived its counter
# (someone deleted the key), XADD refuses the smaller id: drop the stale history,
# since those seqs are being reused, and start it again. A progress event (encoded
# as `{"type":"PROGRESS",...`, `ferry.events.event.with_progress_seq` does the same)
# is numbered by the tenant's progress counter and only published. Each tenant's
# events are published once all are numbered, in order, joined by newlines.
_APPEND = """
local prefix, maxlen, ttl, mark_ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local per_message = tonumber(ARGV[5])
local progress = '{"type":"PROGRESS",'
local function is_progress(event) return string.sub(event, 1, #progress) == progress end
-- First the groups to append, and how many seqs each tenant takes: one INCRBY each.
local groups, counts = {}, {}
local i = 6
while i <= #ARGV do
  local mark, n = ARGV[i], tonumber(ARGV[i + 1])
  if mark == '' or redis.call('SET', prefix .. ':sent:' .. mark, '1', 'NX', 'PX', mark_ttl) then
    groups[#groups + 1] = i + 2
    groups[#groups + 1] = n
    for j = i + 2, i + 2 * n, 2 do
      if not is_progress(ARGV[j + 1]) then counts[ARGV[j]] = (counts[ARGV[j]] or 0) + 1 end
    end
  end
  i = i + 2 + 2 * n
end
local nxt = {}  -- tenant -> its next seq
for tenant, n in pairs(counts) do
  nxt[tenant] = redis.call('INCRBY', prefix .. ':seq:' .. tenant, n) - n + 1
end
local appended, expiring, live, tenants = 0, {}, {}, {}  -- live: tenant -> its events
local function publish(tenant, data)
  local events = live[tenant]
  if not events then
    events = {}
    live[tenant] = events
    tenants[#tenants + 1] = tenant
  end
  events[#events + 1] = data
end
for g = 1, #groups, 2 do
  local first, n = groups[g], groups[g + 1]
  for j = first, first + 2 * n - 1, 2 do
    local tenant, event = ARGV[j], ARGV[j + 1]
    if is_progress(event) then
      local seq = redis.call('INCR', prefix .. ':progress-seq:' .. tenant)
      local after = nxt[tenant] and (nxt[tenant] - 1)
        or redis.call('GET', prefix .. ':seq:' .. tenant) or '0'
      local data = '{"seq":' .. seq .. ',"type":"PROGRESS","after":' .. after .. ','
        .. string.sub(event, #progress + 1)
      publish(tenant, data)
    else
      local seq = nxt[tenant]
      nxt[tenant] = seq + 1
      local data = '{"seq":' .. seq .. ',' .. string.sub(event, 2)
      local stream = prefix .. ':stream:' .. tenant
      local id = seq .. '-0'
      local added = redis.pcall('XADD', stream, 'MAXLEN', '~', maxlen, id, 'data', data)
      if type(added) == 'table' and added.err then
        redis.call('DEL', stream)
        redis.call('XADD', stream, 'MAXLEN', '~', maxlen, id, 'data', data)
      end
      expiring[stream] = true
      publish(tenant, data)
    end
  end
  appended = appended + n
end
for _, tenant in ipairs(tenants) do
  local events = live[tenant]
  for first = 1, #events, per_message do
    local last = math.min(first + per_message - 1, #events)
    redis.call('PUBLISH', prefix .. ':live:' .. tenant, table.concat(events, '\\n', first, last))
  end
end
if ttl > 0 then
  for stream in pairs(expiring) do redis.call('EXPIRE', stream, ttl) end
end
return appended
"""


class RedisEventLog:
    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str,
        *,
        retain: int,
        ttl_s: int = 0,
        mark_ttl_ms: int = MARK_TTL_MS,
        per_message: int = EVENTS_PER_MESSAGE,
    ) -> None:
        if per_message < 1:
            raise ValueError(f"per_message must be 1 or more, not {per_message}")
        self.client = client
        self.per_message = per_message
        self.mark_ttl_ms = mark_ttl_ms
        self.prefix = f"{namespace}:events"
        self.retain = retain
        self.ttl_s = ttl_s
        self._append = client.register_script(_APPEND)
        self.round_trips = 0  # appends, for benchmarks

    def _stream(self, tenant_id: str) -> str:
        return f"{self.prefix}:stream:{tenant_id}"

    def _seq(self, tenant_id: str) -> str:
        return f"{self.prefix}:seq:{tenant_id}"

    async def append(self, committed: Sequence[Committed]) -> None:
        if not any(part.events for part in committed):
            return
        args: list[str | bytes | int] = [
            self.prefix, self.retain, self.ttl_s, self.mark_ttl_ms, self.per_message
        ]  # fmt: skip
        for part in committed:
            args += ["" if part.mark is None else str(part.mark), len(part.events)]
            for event in part.events:
                args += [event.tenant_id, encode(event)]
        await self._append(args=args)
        self.round_trips += 1

    async def appended(self, marks: Sequence[uuid.UUID]) -> list[bool]:
        if not marks:
            return []
        found = await self.client.mget([f"{self.prefix}:sent:{mark}" for mark in marks])
        return [value is not None for value in found]

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
