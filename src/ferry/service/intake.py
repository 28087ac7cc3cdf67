"""Group commit for creates: the jobs of requests that arrive together share one
transaction, one event append and one send.

A request hands its rows to the intake and waits. While one group is being
written, the next gathers; each group is one multi-row INSERT, committed, then
its PENDING events are published and its messages sent (in that order, as for a
single request: a worker's RUNNING never overtakes the PENDING), and only then
does each request get its ids. If the server refuses a group's INSERT, each of
its requests is written alone, so one request's bad rows fail that request
only; if the connection is lost during it, the whole group fails, since it may
have been stored.

Requests with an Idempotency-Key take the per-request path: their key is
claimed in the same transaction as their rows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.jobs import Enqueued, NewRow, create_jobs
from ferry.db.models import new_mark, utcnow
from ferry.events.event import JobEvent, pending_events

MAX_GROUP_ROWS = 1000  # rows per INSERT, as a batch request's
# After the commit: publish the events (of the outbox row), then send the jobs.
Announce = Callable[[list[JobEvent], Sequence[Enqueued], uuid.UUID | None], Awaitable[None]]


@dataclass(slots=True)
class _Create:
    rows: Sequence[NewRow]
    done: asyncio.Future[list[Enqueued]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Intake:
    def __init__(self, engine: AsyncEngine, announce: Announce) -> None:
        self.engine = engine
        self.announce = announce
        self._waiting: deque[_Create] = deque()
        self._writer: asyncio.Task[None] | None = None
        # Statistics for tests and benchmarks.
        self.groups = 0
        self.jobs = 0

    async def create(self, rows: Sequence[NewRow]) -> list[Enqueued]:
        """Insert `rows` (committed), publish their events and send them; their jobs."""
        request = _Create(rows)
        self._waiting.append(request)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_waiting())
        return await request.done

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                group = self._take()
                try:
                    await self._write(group)
                finally:  # whatever happened, no request waits forever
                    for request in group:
                        if not request.done.done():
                            request.done.set_exception(RuntimeError("the job was not created"))
        finally:
            self._writer = None

    def _take(self) -> list[_Create]:
        group: list[_Create] = []
        rows = 0
        while self._waiting and (not group or rows + len(self._waiting[0].rows) <= MAX_GROUP_ROWS):
            request = self._waiting.popleft()
            group.append(request)
            rows += len(request.rows)
        return group

    async def _write(self, group: list[_Create]) -> None:
        mark = new_mark()
        try:
            jobs = await create_jobs(
                self.engine, [row for request in group for row in request.rows], mark
            )
        except Exception as exc:
            if len(group) > 1 and not _outcome_unknown(exc):
                for request in group:  # the server refused the rows: find whose, each alone
                    await self._write([request])
                return
            for request in group:
                if not request.done.done():
                    request.done.set_exception(exc)
            return
        self.groups += 1
        self.jobs += len(jobs)
        await self.announce(pending_events(jobs, utcnow()), jobs, mark)
        start = 0
        for request in group:
            mine = jobs[start : start + len(request.rows)]
            start += len(request.rows)
            if not request.done.done():  # its client may have gone
                request.done.set_result(mine)


def _outcome_unknown(exc: Exception) -> bool:
    """The connection was lost during the INSERT: it may have committed (it commits on its
    own), so writing the rows again could create the jobs twice. The requests fail; a
    job that was stored after all is sent by the recovery pass once it is overdue."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
