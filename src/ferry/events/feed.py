"""One subscriber's view of one tenant: every event once, in seq order, or a resync.

Live events come from the subscriber's channel backlog, which is capped: when a
slow client lets it overflow, the oldest events are dropped. The feed notices
the jump in seq and reads the missing events back from the event log, so a
slow client gets everything while the log retains it, and its memory stays
bounded meanwhile. When the log no longer has them, or says itself that events
were lost, the feed says `Resync`: the client must re-read the current state
over REST.

Progress events (`PROGRESS`) ride along, outside that bookkeeping: their `seq`
is a counter of their own and says nothing of gaps. Each carries `after`, the
tenant's JOB_UPDATE seq when it was published, and is sent in that place: once
the JOB_UPDATEs up to `after` are (read back first if they were missed), and not
at all if later ones were sent already (a replay or a read-back got ahead of it),
so that no PROGRESS ever follows a JOB_UPDATE published after it: its job's end,
say. A client that misses one reads the job's `progress` over REST.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from ferry.events.event import RECONNECTED, progress_after, says_lost, seq_of
from ferry.events.log import EventLog

# Events read back per round trip while catching up.
READ_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Resync:
    """Events were lost for good; the client should re-read state. `seq` is the
    tenant's seq at that moment: what the client has seen from now on."""

    tenant_id: str
    seq: int


FeedItem = bytes | Resync


async def follow(
    log: EventLog, tenant_id: str, live: AsyncIterable[bytes], after: int | None
) -> AsyncIterator[FeedItem]:
    """The tenant's events after seq `after` (None: from now on), then its live ones.

    Subscribe to the channel before calling: what is published while the feed
    reads back arrives on `live` as well, and is sent once."""
    last = await log.current(tenant_id) if after is None else after

    async def read_back(before: int | None) -> AsyncIterator[FeedItem]:
        """What was published after `last` (and before `before`), or a Resync."""
        nonlocal last
        while before is None or last + 1 < before:
            events = await log.read(tenant_id, last, READ_CHUNK)
            if events is None:
                last = before - 1 if before is not None else await log.current(tenant_id)
                yield Resync(tenant_id, last)
                return
            for data in events:
                seq = seq_of(data)
                if before is not None and seq >= before:
                    return
                last = seq
                yield item_of(tenant_id, data, seq)
            if len(events) < READ_CHUNK:
                return

    if after is not None:
        async for item in read_back(None):
            yield item
    async for data in live:
        if data == RECONNECTED:
            latest = await log.current(tenant_id)
            if latest < last:  # the counter started over: Redis lost its data
                last = latest
                yield Resync(tenant_id, latest)
            async for item in read_back(None):
                yield item
            continue
        after = progress_after(data)
        if after is not None:
            if after > last:  # JOB_UPDATEs published before it were missed: them first
                async for item in read_back(after + 1):
                    yield item
            if after == last:
                yield data
            continue
        seq = seq_of(data)
        if seq <= last:
            if seq != 1:
                continue  # published while `last` was read: already counted
            # A tenant's first event again: its counter started over (Redis lost its data).
            yield Resync(tenant_id, 0)
        elif seq > last + 1:
            async for item in read_back(seq):
                yield item
        last = seq
        yield item_of(tenant_id, data, seq)


def item_of(tenant_id: str, data: bytes, seq: int) -> FeedItem:
    """A logged entry as the client gets it: the event, or a Resync where the log says
    that events were lost."""
    return Resync(tenant_id, seq) if says_lost(data) else data
