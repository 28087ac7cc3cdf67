"""The intake's grouping (`ferry.service.intake`) on a fake database: which requests
share an INSERT, how a refusal is narrowed down to its request, and what a lost
connection or a client that went away does to the others."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.jobs import Enqueued, NewRow
from ferry.events.event import JobEvent
from ferry.service.intake import MAX_GROUP_ROWS, Intake

REFUSED = "refused"  # the fake database refuses every INSERT with a row of this tenant
ENGINE = cast(AsyncEngine, object())  # handed to create_jobs only, which is faked


class FakeDatabase:
    """`create_jobs` on a fake: records each INSERT's rows and mark, holds the writes
    while `gate` is clear, refuses an INSERT with a row of the REFUSED tenant, and
    loses the connection mid-INSERT while `lost` is set."""

    def __init__(self) -> None:
        self.inserts: list[list[NewRow]] = []
        self.marks: list[uuid.UUID | None] = []
        self.stored: dict[uuid.UUID, NewRow] = {}
        self.gate = asyncio.Event()
        self.gate.set()
        self.lost = False

    async def create_jobs(
        self, engine: AsyncEngine, rows: Sequence[NewRow], mark: uuid.UUID | None = None
    ) -> list[Enqueued]:
        await asyncio.sleep(0)  # a round trip: the loop runs meanwhile
        assert engine is ENGINE and rows, "an INSERT of no rows"
        self.inserts.append(list(rows))
        self.marks.append(mark)
        await self.gate.wait()
        if self.lost:
            lost = ConnectionResetError("server closed the connection unexpectedly")
            raise DBAPIError("INSERT INTO jobs ...", None, lost, connection_invalidated=True)
        if any(row.tenant_id == REFUSED for row in rows):
            refusal = ValueError("value too long for type character varying(100)")
            raise DBAPIError("INSERT INTO jobs ...", None, refusal)
        jobs = [Enqueued(uuid.uuid4(), row.type, row.tenant_id, row.delay_ms) for row in rows]
        self.stored.update((job.id, row) for job, row in zip(jobs, rows, strict=True))
        return jobs

    def rows_of(self, jobs: list[Enqueued]) -> list[NewRow]:
        """The rows these jobs were stored from."""
        return [self.stored[job.id] for job in jobs]


class Announcements:
    """The intake's `announce`: records what each committed group announced."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[JobEvent], list[Enqueued], uuid.UUID | None]] = []

    async def __call__(
        self, events: list[JobEvent], jobs: Sequence[Enqueued], mark: uuid.UUID | None
    ) -> None:
        self.calls.append((events, list(jobs), mark))


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDatabase]:
    fake = FakeDatabase()
    monkeypatch.setattr("ferry.service.intake.create_jobs", fake.create_jobs)
    yield fake


@pytest.fixture
def announced() -> Announcements:
    return Announcements()


@pytest.fixture
def intake(database: FakeDatabase, announced: Announcements) -> Intake:
    return Intake(ENGINE, announced)


_serial = iter(range(1_000_000))


def rows(count: int, tenant: str = "t") -> list[NewRow]:
    """`count` rows, each unlike any other (its payload numbers it)."""
    return [NewRow(tenant, "sleep", {"n": next(_serial)}, 3, 0) for _ in range(count)]


def send(intake: Intake, request: list[NewRow]) -> asyncio.Task[list[Enqueued]]:
    """A request's create, as its handler runs it: a task of its own."""
    return asyncio.create_task(intake.create(request))


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until `condition` holds (a few steps: nothing here sleeps)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the intake never got there")


async def results(*tasks: asyncio.Task[list[Enqueued]]) -> list[Any]:
    async with asyncio.timeout(5):  # a request left waiting fails the test, not the run
        done: list[Any] = await asyncio.gather(*tasks, return_exceptions=True)
    return done


async def test_requests_that_arrive_during_a_write_gather_into_the_next_group(
    intake: Intake, database: FakeDatabase, announced: Announcements
) -> None:
    database.gate.clear()
    first = rows(1)
    writing = send(intake, first)
    await until(lambda: len(database.inserts) == 1)  # the first group is being written
    later = [rows(2), rows(3), rows(1)]
    waiting = [send(intake, request) for request in later]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(database.inserts) == 1  # they wait for the write, not beside it
    database.gate.set()
    done = await results(writing, *waiting)

    assert database.inserts == [first, [row for request in later for row in request]]
    # Each request gets the jobs of its own rows, in their order.
    assert [database.rows_of(jobs) for jobs in done] == [first, *later]
    assert (intake.groups, intake.jobs) == (2, 7)
    # Each group is announced once, after its INSERT: its jobs, a PENDING event for
    # each, and the mark its rows were written with (their outbox row).
    assert [jobs for _, jobs, _ in announced.calls] == [done[0], done[1] + done[2] + done[3]]
    for (events, jobs, mark), written_with in zip(announced.calls, database.marks, strict=True):
        assert [(e.job_id, e.tenant_id, e.status, e.attempts) for e in events] == [
            (job.id, job.tenant_id, "PENDING", 0) for job in jobs
        ]
        assert mark == written_with and mark is not None
    assert database.marks[0] != database.marks[1]


async def test_a_group_never_exceeds_max_group_rows_and_a_bigger_request_goes_alone(
    intake: Intake, database: FakeDatabase
) -> None:
    m = MAX_GROUP_ROWS
    sizes = [2 * m // 5, 2 * m // 5, 2 * m // 5, 3 * m // 5, m + m // 2, 10]
    database.gate.clear()
    writing = send(intake, rows(1))
    await until(lambda: len(database.inserts) == 1)
    waiting = [send(intake, rows(size)) for size in sizes]
    await asyncio.sleep(0)
    database.gate.set()
    done = await results(writing, *waiting)

    assert [len(jobs) for jobs in done] == [1, *sizes]
    # In arrival order: a group takes the next request while the rows fit (up to the
    # limit itself), a request over the limit is a group of its own.
    assert [len(insert) for insert in database.inserts] == [
        1, sizes[0] + sizes[1], sizes[2] + sizes[3], sizes[4], sizes[5],
    ]  # fmt: skip
    assert sizes[0] + sizes[1] + sizes[2] > m and sizes[2] + sizes[3] == m


async def test_a_refused_group_is_written_again_request_by_request_and_only_the_bad_one_fails(
    intake: Intake, database: FakeDatabase, announced: Announcements
) -> None:
    good, bad, other = rows(2), [*rows(1), *rows(1, tenant=REFUSED)], rows(1)
    done = await results(*(send(intake, request) for request in (good, bad, other)))

    assert database.inserts == [good + bad + other, good, bad, other]
    assert database.rows_of(done[0]) == good and database.rows_of(done[2]) == other
    assert isinstance(done[1], DBAPIError) and "value too long" in str(done[1])
    assert [jobs for _, jobs, _ in announced.calls] == [done[0], done[2]]
    assert intake.groups == 2


async def test_a_connection_lost_mid_insert_fails_the_whole_group_and_writes_nothing_again(
    intake: Intake, database: FakeDatabase, announced: Announcements
) -> None:
    """The INSERT may have committed: written again, each job could be stored twice."""
    database.lost = True
    requests = [rows(1), rows(2), rows(1)]
    done = await results(*(send(intake, request) for request in requests))

    assert all(isinstance(result, DBAPIError) and result.connection_invalidated for result in done)
    assert database.inserts == [[row for request in requests for row in request]]
    assert announced.calls == [] and intake.groups == 0
    # The intake goes on with the next request.
    database.lost = False
    after = rows(1)
    [jobs] = await results(send(intake, after))
    assert database.rows_of(jobs) == after


async def test_a_request_whose_client_went_away_does_not_break_the_others(
    intake: Intake, database: FakeDatabase, announced: Announcements
) -> None:
    database.gate.clear()
    kept, gone = rows(1), rows(2)
    writing = [send(intake, kept), send(intake, gone)]
    await until(lambda: len(database.inserts) == 1)  # both in the group being written
    gone_waiting, kept_waiting = rows(1), rows(3)
    waiting = [send(intake, gone_waiting), send(intake, kept_waiting)]
    await asyncio.sleep(0)
    writing[1].cancel()  # its client disconnected during the write
    waiting[0].cancel()  # this one while it waited for the next group
    database.gate.set()
    done = await results(*writing, *waiting)

    assert writing[1].cancelled() and waiting[0].cancelled()
    assert database.rows_of(done[0]) == kept and database.rows_of(done[3]) == kept_waiting
    assert len(announced.calls) == 2
    # And the intake goes on.
    after = rows(1)
    [jobs] = await results(send(intake, after))
    assert database.rows_of(jobs) == after
