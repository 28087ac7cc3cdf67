"""The per-tenant queues in Redis (`fair.lua` does the work, atomically).

Jobs wait in their tenant's queue; `refill` moves them into Dramatiq's queue
in weighted round robin while that queue is shorter than `depth`, honouring
each tenant's running cap and rate; into an empty queue, a turn's run of one job
type goes as one message of up to `bundle` jobs (`ferry.worker.bundles`). The
API's push refills at once (a tenant alone sees no added latency); each worker
process refills as it drains.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from ferry.queue.messages import Outgoing

SCRIPT = (Path(__file__).parent / "fair.lua").read_text()
# How long a message moved for a capped tenant holds its slot before its job
# starts; once it runs, the worker renews the slot for `lease_ms` at a time.
HOLD_MS = 10 * 60 * 1000


@dataclass(frozen=True, slots=True)
class Refilled:
    moved: int
    tenants_waiting: int  # tenants whose queue still holds jobs


@dataclass(frozen=True, slots=True)
class TenantQueue:
    tenant_id: str
    waiting: int
    wait_ms: int  # how long the oldest waiting message has waited, 0 if none


Slot = tuple[str, str]  # (tenant, Redis message id)


class FairQueue:
    def __init__(
        self, client: redis.Redis, namespace: str, queue_name: str, depth: int, bundle: int = 1
    ) -> None:
        """`bundle`: the most jobs one message carries (1: one job a message)."""
        self.client = client
        self.namespace = namespace
        self.queue_name = queue_name
        self.depth = depth
        self.bundle = bundle
        self._script = client.register_script(SCRIPT)
        self._async_script: AsyncScript | None = None
        self.clock: Callable[[], int] = lambda: int(time.time() * 1000)  # ms; tests set it

    def _args(self, command: str, *args: Any) -> list[Any]:
        return [
            command, self.namespace, self.queue_name, self.clock(), self.depth, HOLD_MS,
            self.bundle, *args,
        ]  # fmt: skip

    def _run(self, command: str, *args: Any) -> list[Any]:
        result: list[Any] = self._script(args=self._args(command, *args))
        return result

    async def _run_on(self, client: aioredis.Redis, command: str, *args: Any) -> list[Any]:
        # A local: another event loop's thread may swap the cached script meanwhile.
        script = self._async_script
        if script is None or script.registered_client is not client:
            script = self._async_script = client.register_script(SCRIPT)
        result: list[Any] = await script(args=self._args(command, *args))
        return result

    def push(self, messages: Sequence[Outgoing]) -> Refilled:
        """Append each message to its tenant's queue, then refill."""
        moved, waiting = self._run("push", *_push_args(messages))
        return Refilled(int(moved), int(waiting))

    async def push_on(self, client: aioredis.Redis, messages: Sequence[Outgoing]) -> Refilled:
        """`push` through an asyncio client: no thread hop on the API's event loop."""
        moved, waiting = await self._run_on(client, "push", *_push_args(messages))
        return Refilled(int(moved), int(waiting))

    def refill(
        self,
        released: Sequence[Slot] = (),
        renewed: Iterable[Slot] = (),
        lease_ms: int = 0,
        short: Sequence[str] = (),
    ) -> Refilled:
        """Free the slots of finished messages, renew those of running ones (and, for
        `lease_ms`, the job types measured `short`: bundled), then refill."""
        args = _refill_args(released, renewed, lease_ms, short)
        moved, waiting = self._run("refill", *args)
        return Refilled(int(moved), int(waiting))

    async def refill_on(
        self,
        client: aioredis.Redis,
        released: Sequence[Slot] = (),
        renewed: Iterable[Slot] = (),
        lease_ms: int = 0,
        short: Sequence[str] = (),
    ) -> Refilled:
        """`refill` through an asyncio client: no thread hop on a worker's event loop."""
        args = _refill_args(released, renewed, lease_ms, short)
        moved, waiting = await self._run_on(client, "refill", *args)
        return Refilled(int(moved), int(waiting))

    def peek(self, tenants: Sequence[str] = ()) -> list[TenantQueue]:
        """Waiting jobs and the oldest one's wait, of `tenants` (default: all waiting)."""
        flat = self._run("peek", *tenants)
        return [
            TenantQueue(flat[i].decode(), int(flat[i + 1]), int(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]

    @property
    def messages_key(self) -> str:
        """The hash of every message waiting in a tenant's queue (by Redis message id)."""
        return f"{self.namespace}:fair:msgs"

    def set_limits(self, limits: Iterable[tuple[str, dict[Any, Any]]]) -> None:
        """Replace the limits of each (tenant, {weight, max_running, rate, burst}) given."""
        pipe = self.client.pipeline(transaction=True)
        for tenant, fields in limits:
            key = f"{self.namespace}:fair:limits:{tenant}"
            pipe.delete(key)
            if fields:
                pipe.hset(key, mapping=fields)
        pipe.execute()


def _push_args(messages: Sequence[Outgoing]) -> list[Any]:
    args: list[Any] = []
    for message in messages:
        args += message
    return args


def _refill_args(
    released: Sequence[Slot], renewed: Iterable[Slot], lease_ms: int, short: Sequence[str]
) -> list[Any]:
    args: list[Any] = [lease_ms, len(released), len(short)]
    for pair in released:
        args += pair
    args += short
    for pair in renewed:
        args += pair
    return args
