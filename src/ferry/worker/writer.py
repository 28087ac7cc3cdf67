"""Group commit: the status transitions of every message in flight, one write per tick.

Worker threads hand their claims and outcomes to one `StatusWriter` per
process and block until the transaction that contains them has committed.
On the worker's background loop, the writer gathers what arrived
during one tick (up to `batch_size`), writes one `UPDATE ... WHERE id IN (...)
RETURNING` per kind of transition (`ferry.worker.statements`), wakes the waiting
threads with what RETURNING confirmed, and hands the committed events to
`on_commit` (which publishes them in one Redis round trip). A retry's thread
waits for the publication too: it sends the next attempt's message, and that
attempt's RUNNING event must not overtake this PENDING one.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.metrics import recorder
from ferry.models import JobStatus, utcnow
from ferry.realtime.event import JobEvent
from ferry.worker.loop import BackgroundLoop
from ferry.worker.statements import Finished, TransitionStatements, statements_for
from ferry.worker.transitions import ClaimedJob, Outcome

log = logging.getLogger(__name__)

OnCommit = Callable[[list[JobEvent]], Awaitable[None]]


class _Reply:
    """One answer handed to one waiting thread: a lock its waiter blocks on until the
    answer is set (a single futex wake; a Future's condition costs several times that)."""

    __slots__ = ("_ready", "value")

    def __init__(self) -> None:
        self.value: Any = None
        self._ready = threading.Lock()
        self._ready.acquire()

    def set(self, value: Any) -> None:
        self.value = value
        self._ready.release()

    def wait(self) -> Any:
        with self._ready:
            return self.value


class _Then:
    """An answer handed to a callback, run on the writer's loop, instead of a thread."""

    __slots__ = ("_then",)

    def __init__(self, then: Callable[[Any], None]) -> None:
        self._then = then

    def set(self, value: Any) -> None:
        try:
            self._then(value)
        except Exception:
            log.exception("a callback after a commit failed")


_Held = tuple[_Reply | _Then, Any]  # a reply that waits until its event is published


@dataclass(slots=True)
class _Request:
    kind: JobStatus  # RUNNING for a claim, else the outcome's status
    job_id: uuid.UUID
    outcome: Outcome | None
    reply: _Reply | _Then


class StatusWriter:
    def __init__(
        self,
        loop: BackgroundLoop,
        engine: Callable[[], AsyncEngine],
        *,
        batch_size: int,
        tick_ms: int,
        on_commit: OnCommit | None = None,
    ) -> None:
        self.loop = loop
        self.engine = engine
        self._sql: TransitionStatements | None = None
        self.batch_size = batch_size
        self.tick = tick_ms / 1000
        self.on_commit = on_commit
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        # Created here, not in run(): worker threads may submit before the loop
        # has started the service (asyncio primitives bind to a loop on first use).
        self._wake = asyncio.Event()
        self._idle = True  # the writer waits for work: a submit must wake it
        self._committed: asyncio.Queue[tuple[list[JobEvent], list[_Held]]] = asyncio.Queue()
        # Statistics for benchmarks and metrics.
        self.ticks = 0
        self.statements = 0
        self.transitions = 0

    @property
    def sql(self) -> TransitionStatements:
        if self._sql is None:
            self._sql = statements_for(self.engine().dialect.name)
        return self._sql

    # -- called from worker threads ------------------------------------------------

    def claim(self, job_id: uuid.UUID) -> ClaimedJob | None:
        """PENDING -> RUNNING (attempts + 1); None if the job is gone, cancelled or taken."""
        reply = _Reply()
        self._submit(_Request(JobStatus.RUNNING, job_id, None, reply))
        result: ClaimedJob | None = reply.wait()
        return result

    def finish(self, outcome: Outcome) -> bool:
        """Record how an attempt ended; False if the job was no longer RUNNING."""
        reply = _Reply()
        self._submit(_Request(outcome.status, outcome.job_id, outcome, reply))
        committed: bool = reply.wait()
        return committed

    def finish_then(self, outcome: Outcome, then: Callable[[bool], None]) -> None:
        """Record how an attempt ended without waiting for the write: `then(committed)`
        runs on the writer's loop once it is committed."""
        self._submit(_Request(outcome.status, outcome.job_id, outcome, _Then(then)))

    def settle(self, timeout: float) -> None:
        """Wait until everything submitted so far is written (from a thread, not the loop)."""
        deadline = time.monotonic() + timeout
        while not (self._idle and self._requests.empty()) and time.monotonic() < deadline:
            time.sleep(0.005)

    def _submit(self, request: _Request) -> None:
        self._requests.put(request)
        # Waking the loop costs a syscall; a writer that is busy will drain the
        # queue before it sleeps, so only an idle one needs it.
        if self._idle:
            self._idle = False
            self.loop.loop.call_soon_threadsafe(self._wake.set)

    # -- the service -----------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self._idle = True
            if self._requests.empty():
                await self._wake.wait()
            self._wake.clear()
            self._idle = False
            if self.tick:
                await asyncio.sleep(self.tick)  # let the tick fill up
            # With no tick, what arrives while one write runs goes into the next.
            while batch := self._drain():
                await self._write_until_committed(batch)

    def _drain(self) -> list[_Request]:
        batch: list[_Request] = []
        while len(batch) < self.batch_size:
            try:
                batch.append(self._requests.get_nowait())
            except queue.Empty:
                break
        return batch

    # -- the write -----------------------------------------------------------------

    async def _write_until_committed(self, batch: list[_Request]) -> None:
        replies, events = await self._write(batch)
        self.ticks += 1
        self.transitions += len(batch)
        held: list[_Held] = []
        for request, reply in zip(batch, replies, strict=True):
            if request.kind is JobStatus.PENDING and reply and self.on_commit is not None:
                held.append((request.reply, reply))
            else:
                request.reply.set(reply)
        if events or held:
            self._committed.put_nowait((events, held))

    async def publish_events(self) -> None:
        """Hand committed events to `on_commit` in commit order; whatever piled up while
        the previous call ran goes out together, in one call."""
        while True:
            events, held = await self._committed.get()
            while not self._committed.empty():
                more_events, more_held = self._committed.get_nowait()
                events += more_events
                held += more_held
            try:
                if self.on_commit is not None and events:
                    await self.on_commit(events)
            except Exception:
                log.exception("publishing %d events failed", len(events))
            finally:
                for waiting, reply in held:
                    waiting.set(reply)

    async def _write(self, batch: Sequence[_Request]) -> tuple[list[Any], list[JobEvent]]:
        now = utcnow()
        by_kind: dict[JobStatus, list[_Request]] = {}
        for request in batch:
            by_kind.setdefault(request.kind, []).append(request)
        # One statement per kind, each on its own autocommit connection, all at
        # once: a transition stands alone, and the tick lasts one round trip.
        kinds = list(by_kind)
        statements = (self._until_committed(kind, by_kind[kind], now) for kind in kinds)
        results = await asyncio.gather(*statements)
        replies: dict[int, Any] = {}
        events: list[JobEvent] = []
        for kind, rows in zip(kinds, results, strict=True):
            self.statements += 1
            recorder.observe("ferry_batch_transitions", len(by_kind[kind]), kind.lower())
            for request in by_kind[kind]:
                row = rows.pop(request.job_id, None)  # a duplicate claim gets nothing
                replies[id(request)] = row if kind is JobStatus.RUNNING else row is not None
                if row is not None:
                    outcome = request.outcome
                    events.append(
                        JobEvent(
                            tenant_id=row.tenant_id,
                            job_id=request.job_id,
                            status=kind,
                            attempts=row.attempts,
                            error=outcome.error if outcome else None,
                            at=now,
                        )
                    )
        return [replies[id(request)] for request in batch], events

    async def _until_committed(
        self, kind: JobStatus, requests: list[_Request], now: datetime
    ) -> dict[uuid.UUID, ClaimedJob] | dict[uuid.UUID, Finished]:
        """Retry until the database takes the statement: waiting threads must not see an
        error, since an exception in a worker hook would ack the message without its status."""
        delay = 0.05
        while True:
            try:
                return await self._statement(kind, requests, now)
            except Exception:
                log.exception("writing %d %s transitions failed; retrying", len(requests), kind)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _statement(
        self, kind: JobStatus, requests: list[_Request], now: datetime
    ) -> dict[uuid.UUID, ClaimedJob] | dict[uuid.UUID, Finished]:
        async with self.engine().connect() as conn:
            if kind is JobStatus.RUNNING:
                ids = list({request.job_id for request in requests})
                return await self.sql.claim(conn, ids, now)
            outcomes = [request.outcome for request in requests if request.outcome is not None]
            return await self.sql.finish(conn, kind, outcomes, now)
