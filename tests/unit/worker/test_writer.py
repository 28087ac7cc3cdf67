"""The status writer's logic on fake statements: what it retries, how it isolates a refusal,
and how a refusal reads."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest

from ferry.db.models import JobStatus
from ferry.db.transitions import ERROR_LIMIT, ClaimedJob, Finished, Outcome, ProgressReport, Wrote
from ferry.events.event import JobEvent, ProgressEvent
from ferry.events.log import Committed
from ferry.worker.loop import BackgroundLoop
from ferry.worker.progress import ProgressBuffer
from ferry.worker.writer import StatusWriter, refusal

COMPLETED, FAILED = JobStatus.COMPLETED, JobStatus.FAILED


class Refused(Exception):
    """What a database says of a statement it will never take (not a lost connection)."""


class FakeStatements:
    """Records every statement; refuses those that carry a job of `refused`, and loses
    the connection `drops` times first, and at the statements numbered in `drop_calls`
    (from 0). Failing a job of `unfailable` alone is refused too."""

    def __init__(
        self,
        refused: set[uuid.UUID] = frozenset(),  # type: ignore[assignment]
        drops: int = 0,
        drop_calls: set[int] = frozenset(),  # type: ignore[assignment]
        unfailable: set[uuid.UUID] = frozenset(),  # type: ignore[assignment]
        ended: set[uuid.UUID] = frozenset(),  # type: ignore[assignment]
        progress_fails: bool = False,
    ) -> None:
        self.refused = refused
        self.drops = drops
        self.drop_calls = drop_calls
        self.unfailable = unfailable
        self.ended = ended  # jobs no longer RUNNING: their progress is not stored
        self.progress_fails = progress_fails
        self.calls: list[tuple[str, list[uuid.UUID]]] = []
        self.reports: list[list[ProgressReport]] = []  # those of each progress statement

    def _run(self, name: str, ids: list[uuid.UUID]) -> None:
        self.calls.append((name, ids))
        if self.drops or len(self.calls) - 1 in self.drop_calls:
            self.drops = max(self.drops - 1, 0)
            raise ConnectionResetError("the server closed the connection")
        if self.refused & set(ids):
            raise Refused('invalid byte sequence for encoding "UTF8": 0x00\nDETAIL: ...')

    async def claim(self, conn: Any, ids: list[uuid.UUID], now: datetime) -> Wrote:
        self._run("claim", ids)
        return Wrote(
            JobStatus.RUNNING, {i: ClaimedJob(i, "t", "sleep", {}, 1, 3) for i in ids}, None
        )

    async def finish(
        self, conn: Any, kind: JobStatus, outcomes: list[Outcome], now: datetime
    ) -> Wrote:
        ids = [outcome.job_id for outcome in outcomes]
        self._run(kind.lower(), ids)
        return Wrote(kind, {i: Finished("t", 1) for i in ids})

    async def fail(
        self, conn: Any, job_id: uuid.UUID, expected: JobStatus, error: str, now: datetime
    ) -> Wrote:
        self.calls.append(("fail alone", [job_id]))
        if job_id in self.unfailable:
            raise Refused("value too long for type character varying(2000)")
        return Wrote(FAILED, {job_id: Finished("t", 1)}, None, error)

    async def unclaim(self, conn: Any, claims: list[tuple[uuid.UUID, int]], now: datetime) -> Wrote:
        ids = [job_id for job_id, _ in claims]
        self._run("unclaim", ids)
        self.unclaimed = claims
        return Wrote(JobStatus.PENDING, {i: Finished("t", 0) for i in ids if i not in self.ended})

    async def progress(self, conn: Any, reports: list[ProgressReport]) -> dict[uuid.UUID, str]:
        self.calls.append(("progress", [report.job_id for report in reports]))
        self.reports.append(reports)
        if self.progress_fails:
            raise ConnectionResetError("the server closed the connection")
        return {report.job_id: "t" for report in reports if report.job_id not in self.ended}


class FakeEngine:
    dialect = SimpleNamespace(name="fake")

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[None]:
        yield None


@pytest.fixture
def loop() -> Iterator[BackgroundLoop]:
    background = BackgroundLoop("writer-test")
    yield background
    background.stop()


def started_writer(
    loop: BackgroundLoop,
    statements: FakeStatements,
    published: list[Committed],
    tick_ms: int = 50,
) -> StatusWriter:
    """A writer on `loop` that publishes into `published`; `tick_ms` lets a tick fill up."""

    async def on_commit(committed: list[Committed]) -> None:
        published.extend(committed)

    engine = FakeEngine()
    writer = StatusWriter(
        loop, lambda: engine, batch_size=100, tick_ms=tick_ms, on_commit=on_commit,  # type: ignore[arg-type, return-value]
        statements=statements,
    )  # fmt: skip
    loop.add_service(writer.run)
    loop.add_service(writer.publish_events)
    loop.start()
    return writer


def write(
    loop: BackgroundLoop, statements: FakeStatements, outcomes: list[Outcome]
) -> tuple[dict[uuid.UUID, JobStatus | None], list[Committed]]:
    """Hand `outcomes` to a writer in one tick; what each was recorded as, and the events."""
    published: list[Committed] = []
    writer = started_writer(loop, statements, published, tick_ms=200)
    recorded: dict[uuid.UUID, JobStatus | None] = {}
    done = threading.Semaphore(0)

    def then(job_id: uuid.UUID, status: JobStatus | None) -> None:
        recorded[job_id] = status
        done.release()

    for outcome in outcomes:  # within one tick: one batch
        writer.finish_then(outcome, partial(then, outcome.job_id))
    for _ in outcomes:
        assert done.acquire(timeout=10)
    writer.settle(timeout=10)
    return recorded, published


def completed(count: int) -> list[Outcome]:
    return [Outcome(uuid.uuid4(), COMPLETED, result={"n": n}) for n in range(count)]


def test_a_refused_job_fails_alone_and_every_other_outcome_is_kept(loop: BackgroundLoop) -> None:
    outcomes = completed(8)
    bad = outcomes[5].job_id
    statements = FakeStatements(refused={bad})
    recorded, published = write(loop, statements, outcomes)
    assert recorded == {o.job_id: FAILED if o.job_id == bad else COMPLETED for o in outcomes}
    # Halved until the refused job is alone: never the same statement twice.
    sizes = [(name, len(ids)) for name, ids in statements.calls]
    assert sizes == [
        ("completed", 8), ("completed", 4), ("completed", 4), ("completed", 2),
        ("completed", 1), ("completed", 1), ("fail alone", 1), ("completed", 2),
    ]  # fmt: skip
    events = {e.job_id: e for part in published for e in part.events if isinstance(e, JobEvent)}
    assert set(events) == {o.job_id for o in outcomes}
    failed = events[bad]
    assert failed.status == FAILED
    assert failed.error == (
        'result could not be stored: invalid byte sequence for encoding "UTF8": 0x00'
    )


def test_a_lost_connection_is_retried_not_split(loop: BackgroundLoop) -> None:
    outcomes = completed(4)
    statements = FakeStatements(drops=2)
    recorded, _ = write(loop, statements, outcomes)
    assert recorded == {o.job_id: COMPLETED for o in outcomes}
    assert [(name, len(ids)) for name, ids in statements.calls] == [("completed", 4)] * 3


def test_a_refused_claim_fails_its_job_and_answers_none(loop: BackgroundLoop) -> None:
    published: list[Committed] = []
    good, bad = uuid.uuid4(), uuid.uuid4()
    statements = FakeStatements(refused={bad})
    writer = started_writer(loop, statements, published, tick_ms=100)
    answers: dict[uuid.UUID, object] = {}
    threads = [
        threading.Thread(target=lambda i=i: answers.__setitem__(i, writer.claim(i)))
        for i in (good, bad)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert isinstance(answers[good], ClaimedJob) and answers[bad] is None
    writer.settle(timeout=10)
    failed = [
        e for part in published for e in part.events if isinstance(e, JobEvent) and e.job_id == bad
    ]
    assert [(e.status, e.error) for e in failed] == [
        (FAILED, 'could not be claimed: invalid byte sequence for encoding "UTF8": 0x00')
    ]


def test_two_refused_jobs_each_fail_alone_and_no_statement_is_tried_twice(
    loop: BackgroundLoop,
) -> None:
    outcomes = completed(16)
    bad = {outcomes[2].job_id, outcomes[11].job_id}
    statements = FakeStatements(refused=bad)
    recorded, _ = write(loop, statements, outcomes)
    assert recorded == {o.job_id: FAILED if o.job_id in bad else COMPLETED for o in outcomes}
    tried = [tuple(ids) for name, ids in statements.calls if name == "completed"]
    assert len(tried) == len(set(tried))
    assert sorted(ids[0] for name, ids in statements.calls if name == "fail alone") == sorted(bad)
    # Each job is in one statement that went through: its own outcome, or its failure.
    written = [job_id for ids in tried if not bad & set(ids) for job_id in ids]
    assert sorted(written) == sorted(o.job_id for o in outcomes if o.job_id not in bad)


def test_a_connection_lost_during_the_split_is_retried_and_the_split_goes_on(
    loop: BackgroundLoop,
) -> None:
    outcomes = completed(4)
    bad = outcomes[3].job_id
    statements = FakeStatements(refused={bad}, drop_calls={1})  # the first half, once
    recorded, _ = write(loop, statements, outcomes)
    assert recorded == {o.job_id: FAILED if o.job_id == bad else COMPLETED for o in outcomes}
    assert [(name, len(ids)) for name, ids in statements.calls] == [
        ("completed", 4), ("completed", 2), ("completed", 2), ("completed", 2),
        ("completed", 1), ("completed", 1), ("fail alone", 1),
    ]  # fmt: skip


def test_a_job_that_cannot_even_be_failed_is_left_to_its_lease_and_the_rest_is_kept(
    loop: BackgroundLoop,
) -> None:
    outcomes = completed(4)
    bad = outcomes[1].job_id
    statements = FakeStatements(refused={bad}, unfailable={bad})
    recorded, published = write(loop, statements, outcomes)
    # Unanswered (None): the job stays RUNNING until its lease expires.
    assert recorded == {o.job_id: None if o.job_id == bad else COMPLETED for o in outcomes}
    events = {e.job_id for part in published for e in part.events if isinstance(e, JobEvent)}
    assert events == {o.job_id for o in outcomes} - {bad}


def test_a_refusal_splits_only_the_statement_of_its_kind(loop: BackgroundLoop) -> None:
    done, failed = completed(4), [Outcome(uuid.uuid4(), FAILED, error="boom") for _ in range(3)]
    bad = done[0].job_id
    statements = FakeStatements(refused={bad})
    recorded, _ = write(loop, statements, [*done, *failed])
    assert recorded == {o.job_id: FAILED if o.job_id == bad else o.status for o in done + failed}
    assert [ids for name, ids in statements.calls if name == "failed"] == [
        [o.job_id for o in failed]
    ]


class DriverError(Exception):
    """A database driver's error: the statement and its parameters follow its first line."""


class Wrapped(Exception):
    """SQLAlchemy's wrapper of a driver's error (`orig`)."""

    def __init__(self, orig: Exception) -> None:
        super().__init__(f"(wrapped) {orig}\n[SQL: UPDATE jobs SET result = $1]")
        self.orig = orig


def test_claims_sent_without_waiting_are_one_statement_and_answered_by_callback(
    loop: BackgroundLoop,
) -> None:
    statements = FakeStatements()
    writer = started_writer(loop, statements, [], tick_ms=200)  # the five fill one tick
    ids = [uuid.uuid4() for _ in range(5)]
    answered: dict[uuid.UUID, ClaimedJob | None] = {}
    done = threading.Semaphore(0)

    def then(job_id: uuid.UUID, job: ClaimedJob | None) -> None:
        answered[job_id] = job
        done.release()

    for job_id in ids:  # one fetch's messages, in one tick
        writer.claim_then(job_id, partial(then, job_id))
    for _ in ids:
        assert done.acquire(timeout=10)
    [(name, claimed)] = statements.calls
    assert (name, sorted(claimed)) == ("claim", sorted(ids))
    assert {job_id: job.id if job else None for job_id, job in answered.items()} == {
        job_id: job_id for job_id in ids
    }


def test_claims_given_back_are_pending_again_once_their_events_are_published(
    loop: BackgroundLoop,
) -> None:
    given_back, ended = uuid.uuid4(), uuid.uuid4()
    statements = FakeStatements(ended={ended})
    published: list[Committed] = []
    writer = started_writer(loop, statements, published)
    claims = [ClaimedJob(job_id, "t", "sleep", {}, 2, 3) for job_id in (given_back, ended)]
    assert writer.unclaim(claims, timeout=10) == [JobStatus.PENDING, None]
    assert statements.unclaimed == [(given_back, 2), (ended, 2)]  # guarded by the attempt
    # Published before the call returns: the message goes back to the queue only then.
    [event] = [e for part in published for e in part.events if isinstance(e, JobEvent)]
    assert (event.job_id, event.status, event.attempts) == (given_back, JobStatus.PENDING, 0)


@pytest.mark.parametrize(
    ("kind", "says"),
    [(JobStatus.RUNNING, "could not be claimed"), (COMPLETED, "result could not be stored"),
     (FAILED, "error could not be stored"), (JobStatus.PENDING, "error could not be stored")],
)  # fmt: skip
def test_a_refusal_reads_as_what_could_not_be_written_and_the_drivers_first_line(
    kind: JobStatus, says: str
) -> None:
    driver = DriverError('invalid byte sequence for encoding "UTF8": 0x00\nDETAIL: $1 = secret')
    assert refusal(kind, Wrapped(driver)) == (
        f'{says}: invalid byte sequence for encoding "UTF8": 0x00'
    )
    assert refusal(kind, DriverError()) == f"{says}: DriverError"  # no message: its type
    long = refusal(kind, DriverError("x\x00" * ERROR_LIMIT))
    assert len(long) == ERROR_LIMIT and "\x00" not in long  # storable, whatever it quotes


# -- progress -----------------------------------------------------------------------------


class Published:
    """What a writer handed to `on_commit`, each call's in order."""

    def __init__(self) -> None:
        self.calls: list[list[Committed]] = []

    async def __call__(self, committed: list[Committed]) -> None:
        self.calls.append(committed)

    def events(self) -> list[JobEvent | ProgressEvent]:
        return [
            event
            for call in self.calls
            for part in call
            for event in part.events
            if isinstance(event, JobEvent | ProgressEvent)
        ]


def progress_writer(
    loop: BackgroundLoop,
    statements: FakeStatements,
    buffer: ProgressBuffer,
    published: Published,
    *,
    tick_ms: int = 0,
    interval_ms: int = 0,
) -> StatusWriter:
    engine = FakeEngine()
    writer = StatusWriter(
        loop, lambda: engine, batch_size=100, tick_ms=tick_ms, on_commit=published,  # type: ignore[arg-type, return-value]
        statements=statements, progress=buffer, progress_interval_ms=interval_ms,
    )  # fmt: skip
    loop.add_service(writer.run)
    loop.add_service(writer.publish_events)
    return writer


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_reports_between_two_ticks_are_one_row_each_of_one_statement(
    loop: BackgroundLoop,
) -> None:
    busy, other = uuid.uuid4(), uuid.uuid4()
    buffer = ProgressBuffer()
    for n in range(10_000):  # all before the writer's tick
        buffer.report(busy, 1, n / 10_000, f"step {n}")
    buffer.report(other, 2, 0.5, None)
    statements, published = FakeStatements(), Published()
    writer = progress_writer(loop, statements, buffer, published)
    loop.start()
    until(lambda: bool(published.calls), "the progress was published")
    writer.settle(timeout=10)
    assert statements.calls == [("progress", [busy, other])]  # one statement, one row per job
    [reports] = statements.reports
    assert reports == [
        ProgressReport(busy, 1, 0.9999, "step 9999"),  # the last report wins
        ProgressReport(other, 2, 0.5, None),
    ]
    events = published.events()
    assert [(e.job_id, e.progress, e.message) for e in events] == [  # type: ignore[union-attr]
        (busy, 0.9999, "step 9999"),
        (other, 0.5, None),
    ]
    assert all(isinstance(e, ProgressEvent) and e.tenant_id == "t" for e in events)
    # Not a transition: no tick, statement or transition counted, no outbox mark.
    assert (writer.ticks, writer.statements, writer.transitions) == (0, 0, 0)
    assert writer.progress_statements == 1
    assert [part.mark for call in published.calls for part in call] == [None]


def test_a_report_wakes_an_idle_writer(loop: BackgroundLoop) -> None:
    job = uuid.uuid4()
    buffer = ProgressBuffer()
    statements, published = FakeStatements(), Published()
    writer = progress_writer(loop, statements, buffer, published, tick_ms=20)
    loop.start()
    for written in range(1, 4):
        writer.settle(timeout=10)  # idle, waiting for work
        buffer.report(job, 1, written / 10, None)
        until(partial(lambda n: len(statements.reports) >= n, written), f"report {written}")
    assert [reports[0].fraction for reports in statements.reports] == [0.1, 0.2, 0.3]


def test_progress_is_written_at_most_once_per_interval(loop: BackgroundLoop) -> None:
    job = uuid.uuid4()
    buffer = ProgressBuffer()
    statements, published = FakeStatements(), Published()
    writer = progress_writer(loop, statements, buffer, published, interval_ms=60_000)
    loop.start()
    buffer.report(job, 1, 0.1, None)
    until(lambda: len(statements.calls) == 1, "the first report was written at once")
    buffer.report(job, 1, 0.2, None)
    time.sleep(0.3)  # the writer waits out the interval (a minute): nothing more
    assert statements.calls == [("progress", [job])]
    assert buffer.pending
    writer.finish(Outcome(job, COMPLETED))  # until the job ends: then at once
    assert statements.calls[1:] == [("progress", [job]), ("completed", [job])]
    assert statements.reports[1] == [ProgressReport(job, 1, 0.2, None)]


def test_a_jobs_outcome_takes_its_last_progress_along_and_its_events_come_after(
    loop: BackgroundLoop,
) -> None:
    """However long the interval, a job that reported and ends has its progress stored
    first, in the same tick, and its PROGRESS published before its status event."""
    ending, running = uuid.uuid4(), uuid.uuid4()
    buffer = ProgressBuffer()
    statements, published = FakeStatements(), Published()
    writer = progress_writer(loop, statements, buffer, published, interval_ms=60_000)
    loop.start()
    buffer.report(running, 1, 0.1, None)
    until(lambda: len(statements.calls) == 1, "the first report was written")
    buffer.report(running, 1, 0.2, "later")
    buffer.report(ending, 1, 1.0, "done")
    done = threading.Event()
    writer.finish_then(Outcome(ending, COMPLETED, result=1), lambda status: done.set())
    assert done.wait(10)
    writer.settle(timeout=10)
    assert statements.calls[1:] == [("progress", [running, ending]), ("completed", [ending])]
    events = [
        (e.job_id, "PROGRESS" if isinstance(e, ProgressEvent) else e.status)
        for e in published.events()
    ]
    assert events == [
        (running, "PROGRESS"), (running, "PROGRESS"), (ending, "PROGRESS"), (ending, COMPLETED),
    ]  # fmt: skip


def test_progress_of_a_job_no_longer_running_is_stored_nowhere_and_not_published(
    loop: BackgroundLoop,
) -> None:
    gone, running = uuid.uuid4(), uuid.uuid4()
    buffer = ProgressBuffer()
    buffer.report(gone, 1, 0.5, None)
    buffer.report(running, 1, 0.5, None)
    statements, published = FakeStatements(ended={gone}), Published()
    writer = progress_writer(loop, statements, buffer, published)
    loop.start()
    until(lambda: bool(published.calls), "the progress was published")
    writer.settle(timeout=10)
    assert [e.job_id for e in published.events()] == [running]


def test_a_failed_progress_statement_is_dropped_and_outcomes_are_kept(
    loop: BackgroundLoop, caplog: pytest.LogCaptureFixture
) -> None:
    job = uuid.uuid4()
    buffer = ProgressBuffer()
    statements, published = FakeStatements(progress_fails=True), Published()
    writer = progress_writer(loop, statements, buffer, published, interval_ms=60_000)
    loop.start()
    buffer.report(job, 1, 0.5, None)
    recorded = threading.Event()
    writer.finish_then(Outcome(job, COMPLETED), lambda status: recorded.set())
    assert recorded.wait(10)
    writer.settle(timeout=10)
    # Tried once, not retried; the outcome written all the same, and published alone.
    assert [name for name, _ in statements.calls] == ["progress", "completed"]
    assert [(e.job_id, getattr(e, "status", None)) for e in published.events()] == [
        (job, COMPLETED)
    ]
    assert "storing the progress of 1 jobs failed" in caplog.text
    assert not buffer.pending
