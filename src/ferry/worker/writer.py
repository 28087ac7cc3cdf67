"""Group commit: the status transitions of every message in flight, one write per tick.

Worker threads hand their claims and outcomes to one `StatusWriter` per
process: a claim waits until the transaction that contains it has committed (or,
sent ahead by the consumer's thread, leaves a callback); an outcome either waits
too (a retry, the in-process broker) or leaves a callback that runs once it is
committed (the message's ack is held until then). A claim whose message goes
back to the queue unstarted is given back (UNCLAIM). On the
worker's background loop, the writer gathers what arrived
during one tick (up to `batch_size`), writes one `UPDATE ... WHERE id IN (...)
RETURNING` per kind of transition (`ferry.db.transitions`), wakes the waiting
threads with what RETURNING confirmed, and hands the committed events to
`on_commit` (which publishes them in one Redis round trip). A retry's thread
waits for the publication too: it sends the next attempt's message, and that
attempt's RUNNING event must not overtake this PENDING one.

A lost connection, or a database unable for now, is waited out. A statement
the database refuses for what it carries is split until the one job it refuses
fails alone, with the reason as its error: one bad job never holds up the others.

Running jobs' progress (`ctx.progress`) waits in a `ProgressBuffer`, latest per
job, and is written before the tick's transitions in one more statement: at most
once per `progress_interval_ms`, and in any tick that holds the outcome of a job
that reported, so that a job's last progress is stored before it ends. Its events
go out ahead of the tick's, only for the jobs still running. It is not a
transition: a statement that fails is logged and its reports dropped (the next
ones will do), never retried.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Literal, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.engine import connection_lost, refused_for_data
from ferry.db.models import JobStatus, utcnow
from ferry.db.transitions import (
    ERROR_LIMIT,
    ClaimedJob,
    Outcome,
    ProgressReport,
    TransitionStatements,
    Wrote,
    statements_for,
)
from ferry.events.event import JobEvent, progress_event
from ferry.events.log import Committed
from ferry.observability.metrics import recorder
from ferry.text import first_line, storable
from ferry.worker.loop import BackgroundLoop
from ferry.worker.progress import ProgressBuffer

log = logging.getLogger(__name__)
T = TypeVar("T")

RUNNING = JobStatus.RUNNING
# A claim given back (its message returned to the queue before it ran): a kind of
# request beside the statuses, written as RUNNING -> PENDING with the attempt uncounted.
UNCLAIM: Literal["UNCLAIM"] = "UNCLAIM"
Kind = JobStatus | Literal["UNCLAIM"]
OnCommit = Callable[[list[Committed]], Awaitable[None]]
# Progress reaches the database and the subscribers at most this often (unless a
# job that reported ends): ten times a second is live enough for a progress bar.
PROGRESS_INTERVAL_MS = 100


def refusal(kind: JobStatus, exc: Exception) -> str:
    """The error of a job whose transition to `kind` the database refused."""
    what = {
        JobStatus.RUNNING: "could not be claimed",
        JobStatus.COMPLETED: "result could not be stored",
    }.get(kind, "error could not be stored")
    # A driver's error (its first line: no SQL, no parameters), else Python's.
    cause = getattr(exc, "orig", None) or exc
    reason = first_line(str(cause)) or type(cause).__name__
    return storable(f"{what}: {reason}", ERROR_LIMIT)


class Reply:
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

    def wait(self, timeout: float = -1) -> Any:
        """The answer; None if none came within `timeout` seconds (default: no limit)."""
        if not self._ready.acquire(timeout=timeout):
            return None
        self._ready.release()
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


_Held = tuple[Reply | _Then, Any]  # a reply that waits until its event is published


@dataclass(slots=True)
class _Request:
    kind: Kind  # RUNNING for a claim, UNCLAIM to give one back, else the outcome's status
    job_id: uuid.UUID
    outcome: Outcome | None
    reply: Reply | _Then
    attempt: int = 0  # an UNCLAIM's: the claimed attempt


class StatusWriter:
    def __init__(
        self,
        loop: BackgroundLoop,
        engine: Callable[[], AsyncEngine],
        *,
        batch_size: int,
        tick_ms: int,
        on_commit: OnCommit | None = None,
        statements: TransitionStatements | None = None,
        progress: ProgressBuffer | None = None,
        progress_interval_ms: int = PROGRESS_INTERVAL_MS,
    ) -> None:
        """`statements`: the SQL to run (by default the engine's dialect's). `progress`:
        the buffer the jobs report into (by default one of its own)."""
        self.loop = loop
        self.engine = engine
        self._sql = statements
        self.batch_size = batch_size
        self.tick = tick_ms / 1000
        self.on_commit = on_commit
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        # Created here, not in run(): worker threads may submit before the loop
        # has started the service (asyncio primitives bind to a loop on first use).
        self._wake = asyncio.Event()
        self._idle = True  # the writer waits for work: a submit must wake it
        self._committed: asyncio.Queue[tuple[list[Committed], list[_Held]]] = asyncio.Queue()
        self._unpublished = 0  # ticks whose events are not handed on yet
        self.progress = ProgressBuffer() if progress is None else progress
        self.progress.on_first = self.wake
        self.progress_interval = progress_interval_ms / 1000
        self._progress_at = -float("inf")  # when progress was last drained
        # Statistics for benchmarks and metrics (progress is not a transition).
        self.ticks = 0
        self.statements = 0
        self.transitions = 0
        self.progress_statements = 0

    @property
    def sql(self) -> TransitionStatements:
        if self._sql is None:
            self._sql = statements_for(self.engine().dialect.name)
        return self._sql

    # -- called from worker threads ------------------------------------------------

    def claim(self, job_id: uuid.UUID) -> ClaimedJob | None:
        """PENDING -> RUNNING (attempts + 1); None if the job is gone, cancelled or taken."""
        return self.claim_all([job_id])[0]

    def claim_all(self, job_ids: Sequence[uuid.UUID]) -> list[ClaimedJob | None]:
        """`claim` each job, submitted together (so written in one or two ticks): each
        claimed job or None, in order."""
        replies = []
        for job_id in job_ids:
            replies.append(reply := Reply())
            self._submit(_Request(JobStatus.RUNNING, job_id, None, reply))
        return [reply.wait() for reply in replies]

    def claim_then(self, job_id: uuid.UUID, then: Callable[[ClaimedJob | None], None]) -> None:
        """`claim` without waiting: `then(claimed)` runs on the writer's loop once the claim
        is committed."""
        self._submit(_Request(JobStatus.RUNNING, job_id, None, _Then(then)))

    def unclaim(self, claims: Sequence[ClaimedJob], timeout: float) -> list[JobStatus | None]:
        """Give back claims whose jobs never started: PENDING again, their attempt not
        counted. Waits until written and published, `timeout` seconds at most: each job's
        status (PENDING; None if it was no longer that attempt's RUNNING, or not written
        in time: its lease will expire)."""
        replies = []
        for job in claims:
            replies.append(reply := Reply())
            self._submit(_Request(UNCLAIM, job.id, None, reply, job.attempts))
        deadline = time.monotonic() + timeout
        return [reply.wait(max(0.0, deadline - time.monotonic())) for reply in replies]

    def finish(self, outcome: Outcome) -> JobStatus | None:
        """Record how an attempt ended: the status recorded (the outcome's, or FAILED if the
        database refused it), None if the job was no longer RUNNING."""
        reply = Reply()
        self._submit(_Request(outcome.status, outcome.job_id, outcome, reply))
        recorded: JobStatus | None = reply.wait()
        return recorded

    def finish_then(self, outcome: Outcome, then: Callable[[JobStatus | None], None]) -> None:
        """Record how an attempt ended without waiting for the write: `then(recorded)`
        runs on the writer's loop once it is committed."""
        self._submit(_Request(outcome.status, outcome.job_id, outcome, _Then(then)))

    def settle(self, timeout: float) -> None:
        """Wait until everything submitted so far is written and its events handed on (from
        a thread, not the loop)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (
            self._idle and self._requests.empty() and not self._unpublished
        ):
            time.sleep(0.005)

    def _submit(self, request: _Request) -> None:
        self._requests.put(request)
        self.wake()

    def wake(self) -> None:
        """Work has arrived (a request, or progress in an empty buffer), from any thread."""
        # Waking the loop costs a syscall; a writer that is busy will look at the
        # queue and the progress before it sleeps, so only an idle one needs it.
        if self._idle:
            self._idle = False
            self.loop.loop.call_soon_threadsafe(self._wake.set)

    # -- the service -----------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self._idle = True
            if self._requests.empty() and not self.progress.pending:
                await self._wake.wait()
            self._wake.clear()
            self._idle = False
            if self.tick:
                await asyncio.sleep(self.tick)  # let the tick fill up
            if self._requests.empty():
                await self._progress_due()
            # With no tick, what arrives while one write runs goes into the next.
            while True:
                batch = self._drain()
                reports = self._reports(batch)
                if not (batch or reports):
                    break
                await self._write_until_committed(batch, reports)

    async def _progress_due(self) -> None:
        """With progress only to write: wait until its interval is over, or a request
        comes."""
        delay = self._progress_at + self.progress_interval - time.monotonic()
        if delay <= 0:
            return
        self._idle = True
        if self._requests.empty():
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
        self._wake.clear()
        self._idle = False

    def _reports(self, batch: list[_Request]) -> list[ProgressReport]:
        """The progress to write with `batch`: all of it, once its interval is over or
        when a job that reported ends in `batch` (its last report is stored first)."""
        if not self.progress.pending:
            return []
        now = time.monotonic()
        if now < self._progress_at + self.progress_interval and not self.progress.holds_any(
            request.job_id for request in batch if request.kind is not RUNNING
        ):
            return []
        self._progress_at = now
        return self.progress.drain()

    def _drain(self) -> list[_Request]:
        batch: list[_Request] = []
        while len(batch) < self.batch_size:
            try:
                batch.append(self._requests.get_nowait())
            except queue.Empty:
                break
        return batch

    # -- the write -----------------------------------------------------------------

    async def _write_until_committed(
        self, batch: list[_Request], reports: list[ProgressReport]
    ) -> None:
        # Progress first: a job's last report is stored before its outcome (which it
        # preceded), and its event goes out before the outcome's.
        committed = await self._write_progress(reports) if reports else []
        held: list[_Held] = []
        if batch:
            replies, transitions = await self._write(batch)
            committed += transitions
            self.ticks += 1
            self.transitions += len(batch)
            for request, reply in zip(batch, replies, strict=True):
                if reply is JobStatus.PENDING and self.on_commit is not None:
                    held.append((request.reply, reply))
                else:
                    request.reply.set(reply)
        if committed or held:
            self._unpublished += 1
            self._committed.put_nowait((committed, held))

    async def publish_events(self) -> None:
        """Hand committed events to `on_commit` in commit order; whatever piled up while
        the previous call ran goes out together, in one call. Events that cannot be
        handed over are not lost: their outbox rows are relayed by the recovery pass."""
        while True:
            committed, held = await self._committed.get()
            taken = 1
            while not self._committed.empty():
                more_committed, more_held = self._committed.get_nowait()
                committed += more_committed
                held += more_held
                taken += 1
            try:
                if self.on_commit is not None and committed:
                    await self.on_commit(committed)
            except Exception:
                log.exception("publishing the events of %d statements failed", len(committed))
            finally:
                self._unpublished -= taken
                for waiting, reply in held:
                    waiting.set(reply)

    async def _write(self, batch: Sequence[_Request]) -> tuple[list[Any], list[Committed]]:
        """Write a tick: (each request's reply, the events of each statement, in order)."""
        now = utcnow()
        by_kind: dict[Kind, list[_Request]] = {}
        for request in batch:
            by_kind.setdefault(request.kind, []).append(request)
        # One statement per kind, each on its own autocommit connection, all at
        # once: a transition stands alone, and the tick lasts one round trip.
        kinds = list(by_kind)
        written = await asyncio.gather(
            *(self._until_committed(kind, by_kind[kind], now) for kind in kinds)
        )
        replies: dict[int, Any] = {}
        committed: list[Committed] = []
        for kind, statements in zip(kinds, written, strict=True):
            recorder.observe("ferry_batch_transitions", len(by_kind[kind]), kind.lower())
            requests = {request.job_id: request for request in reversed(by_kind[kind])}
            for wrote in statements:
                self.statements += 1
                committed.append(self._events(wrote, requests, now))
                for job_id, row in wrote.rows.items():
                    # A claim is answered with the claimed job (None if it failed instead),
                    # an outcome with the status it was recorded as.
                    claimed = row if wrote.status is RUNNING else None
                    replies[id(requests[job_id])] = claimed if kind is RUNNING else wrote.status
        # Unanswered (None): jobs that were not as expected, and duplicate claims of a job.
        return [replies.get(id(request)) for request in batch], committed

    async def _write_progress(self, reports: list[ProgressReport]) -> list[Committed]:
        """Store the reports of the jobs still running: their events (no mark: nothing is
        announced in the outbox). A failure drops them, logged."""
        now = utcnow()
        try:
            async with self.engine().connect() as conn:
                stored = await self.sql.progress(conn, reports)
        except Exception as exc:
            log.warning("storing the progress of %d jobs failed (%s); dropped", len(reports), exc)
            return []
        finally:
            self.progress_statements += 1
        events = [
            progress_event(tenant, report.job_id, report.fraction, report.message, now)
            for report in reports
            if (tenant := stored.get(report.job_id)) is not None
        ]
        return [Committed(events)] if events else []

    @staticmethod
    def _events(wrote: Wrote, requests: dict[uuid.UUID, _Request], now: datetime) -> Committed:
        events = []
        for job_id, row in wrote.rows.items():
            outcome = requests[job_id].outcome
            error = wrote.error or (outcome.error if outcome else None)
            events.append(JobEvent(row.tenant_id, job_id, wrote.status, row.attempts, error, now))
        return Committed(events, wrote.mark)

    async def _until_committed(
        self, kind: Kind, requests: list[_Request], now: datetime
    ) -> list[Wrote]:
        """Write `requests` (all of one kind) until the database has taken them.

        A lost connection (or a database unable for now) is waited out and the
        statement tried again: waiting threads must not see an error, since an
        exception in a worker hook would ack the message without its status. A
        statement the database refuses for its data (a NUL in a result, say) would be
        refused every time: it is halved until the job it refuses is alone, and that
        job fails with the reason, so every other outcome is kept."""
        try:
            statement = partial(self._statement, kind, requests, now)
            return [await _retried(f"writing {len(requests)} {kind} transitions", statement)]
        except Exception as exc:
            if kind == UNCLAIM:  # ids and numbers only: not expected to be refused
                log.error("giving back %d claims was refused (%s); their leases will expire",
                          len(requests), exc)  # fmt: skip
                return []
            return await self._refused(kind, requests, now, exc)

    async def _refused(
        self, kind: JobStatus, requests: list[_Request], now: datetime, exc: Exception
    ) -> list[Wrote]:
        if len(requests) > 1:
            half = len(requests) // 2
            first = await self._until_committed(kind, requests[:half], now)
            return first + await self._until_committed(kind, requests[half:], now)
        [request] = requests
        error = refusal(kind, exc)
        log.error("job %s: %s", request.job_id, error)
        expected = JobStatus.PENDING if kind is RUNNING else RUNNING
        try:
            fail = partial(self._fail, request.job_id, expected, error, now)
            return [await _retried(f"failing job {request.job_id}", fail)]
        except Exception:
            log.exception("job %s could not even be failed; its lease will expire", request.job_id)
            return []

    async def _fail(
        self, job_id: uuid.UUID, expected: JobStatus, error: str, now: datetime
    ) -> Wrote:
        async with self.engine().connect() as conn:
            return await self.sql.fail(conn, job_id, expected, error, now)

    async def _statement(self, kind: Kind, requests: list[_Request], now: datetime) -> Wrote:
        async with self.engine().connect() as conn:
            if kind is JobStatus.RUNNING:
                ids = list({request.job_id for request in requests})
                return await self.sql.claim(conn, ids, now)
            if kind == UNCLAIM:
                claims = [(request.job_id, request.attempt) for request in requests]
                return await self.sql.unclaim(conn, claims, now)
            outcomes = [request.outcome for request in requests if request.outcome is not None]
            return await self.sql.finish(conn, kind, outcomes, now)


async def _retried(what: str, write: Callable[[], Awaitable[T]]) -> T:
    """`write()` until the database takes it, waiting out everything but a refusal of
    its data (raised)."""
    delay = 0.05
    while True:
        try:
            return await write()
        except Exception as exc:
            if refused_for_data(exc):
                raise
            # A lost connection comes back; anything else (a table not migrated yet, a
            # read-only database) needs an operator, and nothing is lost meanwhile.
            level = logging.WARNING if connection_lost(exc) else logging.ERROR
            log.log(level, "%s failed (%s); retrying", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
