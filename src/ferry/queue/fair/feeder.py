"""Each worker process keeps Dramatiq's queue fed from the tenants' queues.

While any tenant has jobs waiting the feeder refills often enough that
workers never find Dramatiq's queue empty: it polls faster when a refill
finds the queue half drained, slower when it finds it still full (between
`FASTEST_S` and `SLOWEST_S`); with no job waiting, every `IDLE_POLL_S` (a
push refills by itself when there is room). Each call
also frees the slots of the messages this process finished and, every
heartbeat, renews those of the messages it is running, so a capped tenant's
slots outlive neither a finished job nor a dead worker by more than a lease;
with them, for a lease, the job types this process has measured short, whose
jobs the refills move several to a message (`ferry.worker.bundles`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from ferry.queue.fair.queue import FairQueue, Slot

log = logging.getLogger(__name__)

FASTEST_S, SLOWEST_S = 0.002, 0.01
IDLE_POLL_S = 0.1


class Feeder:
    def __init__(
        self,
        fair: FairQueue,
        client: aioredis.Redis,
        *,
        lease_ms: int,
        heartbeat_ms: int,
        short: Callable[[], list[str]] = list,
    ) -> None:
        """`short`: the job types this process has measured short."""
        self.fair = fair
        self.short = short
        self._told: set[str] = set()  # the short types in the last refill that named them
        self.client = client  # on the worker's event loop
        self.lease_ms = lease_ms
        self.renew_every = heartbeat_ms / 1000
        self._lock = threading.Lock()
        self._running: dict[str, str] = {}  # Redis message id -> tenant
        self._released: list[Slot] = []

    # Called from worker threads.
    def started(self, tenant: str, message_id: str) -> None:
        with self._lock:
            self._running[message_id] = tenant

    def finished(self, tenant: str, message_id: str) -> None:
        with self._lock:
            self._running.pop(message_id, None)
            self._released.append((tenant, message_id))

    def _take(self, renew: bool) -> tuple[list[Slot], list[Slot]]:
        with self._lock:
            released, self._released = self._released, []
            running = [(tenant, id_) for id_, tenant in self._running.items()] if renew else []
        return released, running

    async def run(self) -> None:
        next_renewal = 0.0
        delay = FASTEST_S
        while True:
            renew = time.monotonic() >= next_renewal
            released, running = self._take(renew)
            # Told every heartbeat, and at once when a type turns out short.
            short = self.short()
            if not renew and self._told.issuperset(short):
                short = []
            try:
                refilled = await self.fair.refill_on(
                    self.client, released, running, self.lease_ms, short
                )
            except Exception:
                log.exception("refilling the jobs queue failed; trying again")
                with self._lock:
                    self._released[:0] = released
                await asyncio.sleep(1)
                continue
            if short:
                self._told = set(short)
            if renew:
                next_renewal = time.monotonic() + self.renew_every
            if not refilled.tenants_waiting:
                await asyncio.sleep(IDLE_POLL_S)
                continue
            if refilled.moved == 0:
                delay = min(delay * 2, SLOWEST_S)
            elif refilled.moved >= self.fair.depth // 2:
                delay = max(delay / 2, FASTEST_S)
            await asyncio.sleep(delay)
