"""The per-tenant event log: numbers events, keeps the recent ones, publishes them.

`seq` counts a tenant's events from 1 with no holes, so a subscriber that sees
seq jump knows exactly which events it missed and can read them back with
`read` as long as they are retained; `read` answers None once they are not.

Progress events (`ProgressEvent`) are published only: numbered by a counter of
their own, so that they leave no hole in `seq`, with the tenant's current `seq`
as their `after`, and not retained (a client that missed some reads the job's
`progress` over REST).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from ferry.events.event import (
    Event,
    ProgressEvent,
    channel_name,
    encode,
    published,
    with_progress_seq,
    with_seq,
)

MARK_TTL_MS = 600_000  # by default: Settings.event_mark_ttl_ms says why
EVENTS_PER_MESSAGE = 500  # by default: Settings.events_per_message says why


@dataclass(frozen=True, slots=True)
class Committed:
    """The events of one committed change, and the outbox row that holds its jobs
    (`ferry.db.outbox`; None where there is none): whoever appends them first, the
    committer or the recovery pass, appends them; the other finds them appended."""

    events: Sequence[Event]
    mark: uuid.UUID | None = None


class EventLog(Protocol):
    async def append(self, committed: Sequence[Committed]) -> None:
        """Number, retain and publish the events, in order, each tenant's together
        (`ferry.events.event.published`); those of a mark appended before are skipped.
        A `ProgressEvent` is numbered apart and published only."""

    async def appended(self, marks: Sequence[uuid.UUID]) -> list[bool]:
        """Whether the events of each mark were appended (in the last few minutes)."""

    async def read(self, tenant_id: str, after: int, limit: int) -> list[bytes] | None:
        """Up to `limit` retained events with seq > `after`, oldest first; None when
        the event right after `after` is no longer retained (the caller must resync)."""

    async def current(self, tenant_id: str) -> int:
        """The tenant's latest seq (0 before its first event)."""


Deliver = Callable[[str, bytes], None]  # a channel, a message of its events (`published`)


class MemoryEventLog:
    """The embedded default: one process, events in memory.

    Workers append from their own thread, so numbering, retention and delivery
    happen under one lock: the delivery order is the seq order."""

    def __init__(
        self, namespace: str, deliver: Deliver, *, retain: int, mark_ttl_ms: int = MARK_TTL_MS
    ) -> None:
        self.namespace = namespace
        self.deliver = deliver
        self.retain = retain
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}
        self._progress_seq: dict[str, int] = {}
        self._kept: dict[str, deque[tuple[int, bytes]]] = {}
        # The marks appended (on PostgreSQL without Redis there is an outbox too),
        # oldest first, as long as the recovery pass may ask.
        self._marks: OrderedDict[uuid.UUID, float] = OrderedDict()
        self.mark_ttl_s = mark_ttl_ms / 1000

    async def append(self, committed: Sequence[Committed]) -> None:
        with self._lock:
            fresh = [part for part in committed if not self._mark(part.mark)]
            live: dict[str, list[bytes]] = {}  # tenant -> its events, in order
            for event in (event for part in fresh for event in part.events):
                tenant = event.tenant_id
                if isinstance(event, ProgressEvent):
                    seq = self._progress_seq[tenant] = self._progress_seq.get(tenant, 0) + 1
                    data = with_progress_seq(encode(event), seq, self._seq.get(tenant, 0))
                    live.setdefault(tenant, []).append(data)
                    continue
                seq = self._seq.get(tenant, 0) + 1
                self._seq[tenant] = seq
                data = with_seq(encode(event), seq)
                kept = self._kept.get(tenant)
                if kept is None:
                    kept = self._kept[tenant] = deque(maxlen=self.retain)
                kept.append((seq, data))
                live.setdefault(tenant, []).append(data)
            for tenant, events in live.items():
                self.deliver(channel_name(self.namespace, tenant), published(events))

    def _mark(self, mark: uuid.UUID | None) -> bool:
        """Remember `mark` as appended; whether it was already."""
        now = time.monotonic()
        while self._marks and next(iter(self._marks.values())) < now - self.mark_ttl_s:
            self._marks.popitem(last=False)
        if mark is None:
            return False
        if mark in self._marks:
            return True
        self._marks[mark] = now
        return False

    async def appended(self, marks: Sequence[uuid.UUID]) -> list[bool]:
        with self._lock:
            return [mark in self._marks for mark in marks]

    async def read(self, tenant_id: str, after: int, limit: int) -> list[bytes] | None:
        with self._lock:
            latest = self._seq.get(tenant_id, 0)
            if after == latest:
                return []
            kept = self._kept.get(tenant_id)
            if after > latest or not kept or kept[0][0] > after + 1:
                return None
            start = after + 1 - kept[0][0]  # seqs in `kept` are consecutive
            return [data for _, data in islice(kept, start, start + limit)]

    async def current(self, tenant_id: str) -> int:
        with self._lock:
            return self._seq.get(tenant_id, 0)
