"""Whether the API and the workers agree on the job types: each worker process publishes
the digests of the types it runs (`ferry.jobs.registry.digest_of`) in Redis, and the
API compares them with its own (`GET /health/ready`).

The deployment's namespace holds two keys: `<namespace>:__job_types__` maps each live
worker (its broker id) to when its entry expires, and `<namespace>:__job_types__.by_worker`
maps it to what it published (`Published`). A worker refreshes its entry every
heartbeat, so that of one that died without a word is read no more after `ttl_ms`, and
is removed by the next worker that publishes; both keys expire when no worker is left.
Expiry times are Redis's own clock: the hosts' clocks need not agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec
import redis.asyncio as aioredis

from ferry.jobs.registry import TypeDigest

MIN_TTL_MS = 10_000


class Published(msgspec.Struct, frozen=True):
    """What one worker process runs: its instance (host:pid) and its types' digests."""

    worker: str
    types: dict[str, TypeDigest]


def ttl_ms(heartbeat_ms: int) -> int:
    """How long a worker's entry lives: a few missed heartbeats, not a stalled second."""
    return max(5 * heartbeat_ms, MIN_TTL_MS)


def keys(namespace: str) -> list[str]:
    index = f"{namespace}:__job_types__"
    return [index, f"{index}.by_worker"]


# KEYS: the index, the entries. ARGV: the worker, its entry's ttl (ms), its entry.
_PUBLISH = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], ms + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ms)
for _, worker in ipairs(gone) do
  redis.call('ZREM', KEYS[1], worker)
  redis.call('HDEL', KEYS[2], worker)
end
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
"""
# KEYS: the index, the entries. Returns the live workers and their entries.
_READ = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], ms, '+inf')
if #live == 0 then return {{}, {}} end
return {live, redis.call('HMGET', KEYS[2], unpack(live))}
"""
_decode = msgspec.json.Decoder(Published)


async def publish(
    client: aioredis.Redis, namespace: str, worker_id: str, entry: Published, ttl: int
) -> None:
    await client.eval(_PUBLISH, 2, *keys(namespace), worker_id, ttl, msgspec.json.encode(entry))


async def withdraw(client: aioredis.Redis, namespace: str, worker_id: str) -> None:
    """A worker that stops takes its entry with it: it runs nothing any more."""
    index, entries = keys(namespace)
    await client.zrem(index, worker_id)
    await client.hdel(entries, worker_id)


async def live_workers(client: aioredis.Redis, namespace: str) -> list[Published | str]:
    """What each live worker published; for an entry this version cannot read (another
    version's, say), the worker's id."""
    workers, entries = await client.eval(_READ, 2, *keys(namespace))
    found: list[Published | str] = []
    for worker, entry in zip(workers, entries, strict=True):
        try:
            found.append(_decode.decode(entry))
        except (msgspec.DecodeError, TypeError):  # TypeError: no entry (None)
            found.append(worker.decode(errors="replace") if isinstance(worker, bytes) else worker)
    return found


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One job type the API and the workers disagree on (or none is run at all)."""

    job_type: str | None  # None: about no type in particular
    problem: str  # "{workers}" stands for the workers that show it
    workers: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str | None, str]:
        """Which disagreement it is, whichever workers show it now (logged once each)."""
        return self.job_type, self.problem

    def __str__(self) -> str:
        text = self.problem.replace("{workers}", _named(self.workers))
        return f"{self.job_type}: {text}" if self.job_type else text


# The parts of a digest, in words.
PARTS = {
    "payload_schema": "payload schema",
    "time_limit_ms": "time limit",
    "max_attempts": "max attempts",
    "retry_base_ms": "retry base",
    "retry_cap_ms": "retry cap",
}
NO_WORKER = "no worker has published its job types (none is running, or all run an older Ferry)"
UNREADABLE = "{workers} published job types this API cannot read"


def disagreements(
    ours: Mapping[str, TypeDigest], workers: Sequence[Published | str]
) -> list[Disagreement]:
    """How the API's job types (`ours`) and those of the live workers disagree: a type
    whose digest differs on some workers (naming the parts that differ), a type the API
    accepts that no worker runs, or that some workers do not run, and a type workers run
    that the API does not know. Empty: they agree. No worker at all is one
    disagreement, not one per type."""
    readable = [entry for entry in workers if isinstance(entry, Published)]
    unreadable = tuple(entry for entry in workers if isinstance(entry, str))
    found = [Disagreement(None, UNREADABLE, unreadable)] if unreadable else []
    if not readable:
        return found or [Disagreement(None, NO_WORKER)]
    for name, digest in sorted(ours.items()):
        lacking = tuple(worker.worker for worker in readable if name not in worker.types)
        if len(lacking) == len(readable):
            found.append(Disagreement(name, "no worker runs it"))
        elif lacking:
            found.append(Disagreement(name, "not run by {workers}", lacking))
        differing = [
            (worker.worker, _parts_differing(digest, worker.types[name]))
            for worker in readable
            if name in worker.types and worker.types[name].digest != digest.digest
        ]
        if differing:
            parts = list(dict.fromkeys(part for _, differ in differing for part in differ))
            verb = "differs" if len(parts) == 1 else "differ"
            problem = f"{', '.join(parts)} {verb} between this API and {{workers}}"
            found.append(Disagreement(name, problem, tuple(worker for worker, _ in differing)))
    unknown: dict[str, list[str]] = {}
    for worker in readable:
        for name in worker.types.keys() - ours.keys():
            unknown.setdefault(name, []).append(worker.worker)
    for name, who in sorted(unknown.items()):
        found.append(Disagreement(name, "run by {workers}, unknown to this API", tuple(who)))
    return found


def _parts_differing(ours: TypeDigest, theirs: TypeDigest) -> list[str]:
    parts = [words for part, words in PARTS.items() if getattr(ours, part) != getattr(theirs, part)]
    return parts or ["digest"]  # a part only another version of Ferry digests


def _named(workers: Sequence[str], shown: int = 3) -> str:
    noun = "worker" if len(workers) == 1 else "workers"
    more = len(workers) - shown
    names = ", ".join(workers[:shown])
    return f"{noun} {names} and {more} more" if more > 0 else f"{noun} {names}"


def summary(found: Sequence[Disagreement]) -> str:
    """The check's text: "ok", or each disagreement, separated by "; "."""
    return "; ".join(map(str, found)) if found else "ok"
