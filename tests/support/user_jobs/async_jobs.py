"""Async job types for the tests of the job loop: many at once on one worker process,
time limits and cancels that reach a handler while it awaits."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

from ferry import JobContext, PermanentError, Retry, job

_running: dict[str, int] = {}  # per rendezvous: how many of its jobs run now
_met: set[str] = set()  # rendezvous whose jobs all ran at once
_changed = asyncio.Condition()  # created unbound; used on the worker's one job loop


class Rendezvous(msgspec.Struct, rename="camel"):
    name: str
    expect: int  # how many jobs of this name must run at once before any returns
    within_s: float = 30


@job("rendezvous", payload=Rendezvous, max_attempts=1)
async def rendezvous(payload: Rendezvous, ctx: JobContext) -> dict[str, Any]:
    """Returns once `expect` jobs of the same name run at the same time (fails if they
    never do): they can only complete if they run at once."""
    async with _changed:
        _running[payload.name] = _running.get(payload.name, 0) + 1
        if _running[payload.name] >= payload.expect:
            _met.add(payload.name)  # all there at once: every one of them may return
        _changed.notify_all()
        try:
            await asyncio.wait_for(
                _changed.wait_for(lambda: payload.name in _met), payload.within_s
            )
        except TimeoutError:
            raise PermanentError(f"only {_running[payload.name]} ran at once") from None
        finally:
            _running[payload.name] -= 1
    return {"met": True}


class Nap(msgspec.Struct, rename="camel"):
    seconds: float
    # Where to note that the nap was interrupted (a cancel reaching the handler).
    note: str | None = None


@job("nap", payload=Nap, time_limit_s=5, max_attempts=1)
async def nap(payload: Nap, ctx: JobContext) -> dict[str, float]:
    try:
        await asyncio.sleep(payload.seconds)
    except asyncio.CancelledError:
        if payload.note:  # whole or not at all: the test polls for the file
            written = Path(f"{payload.note}.part")
            written.write_text(f"aborted={ctx.aborted}")  # noqa: ASYNC240 (once, tiny)
            written.replace(payload.note)  # noqa: ASYNC240
        raise
    return {"slept": payload.seconds}


@job("async_flaky", max_attempts=3)
async def async_flaky(payload: dict[str, Any], ctx: JobContext) -> dict[str, int]:
    await asyncio.sleep(0)
    if ctx.attempt == 1:
        raise Retry(after_ms=100, reason="not ready yet")
    if payload.get("fail"):
        raise PermanentError("refused")
    return {"attempt": ctx.attempt}


@job("async_bloat", max_attempts=1)
async def async_bloat(payload: dict[str, Any]) -> str:
    return "x" * 100 * 1024


@job("async_timeout", max_attempts=1)
async def async_timeout(payload: dict[str, Any]) -> None:
    raise TimeoutError("the upstream timed out")
