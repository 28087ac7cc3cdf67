"""The job loop of async handlers, without servers: outcomes, time limit, cancel, slots."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from dramatiq.middleware import TimeLimitExceeded

from ferry.jobs.errors import JobAborted
from ferry.worker.async_jobs import AsyncJobs, AsyncRun, hand_over, take_handover
from ferry.worker.running import RunningJobs


class Outcomes:
    """What `done` was called with, per job, awaitable from the test's thread."""

    def __init__(self) -> None:
        self.got: dict[uuid.UUID, tuple[Any, BaseException | None, str]] = {}
        self._changed = threading.Condition()

    def done_for(self, job_id: uuid.UUID) -> Callable[[Any, BaseException | None], None]:
        def done(result: Any, exception: BaseException | None) -> None:
            with self._changed:
                self.got[job_id] = (result, exception, threading.current_thread().name)
                self._changed.notify_all()

        return done

    def wait(self, job_id: uuid.UUID, timeout: float = 5) -> tuple[Any, BaseException | None, str]:
        with self._changed:
            assert self._changed.wait_for(lambda: job_id in self.got, timeout), "no outcome"
            return self.got[job_id]


@pytest.fixture
def jobs() -> Iterator[AsyncJobs]:
    jobs = AsyncJobs(limit=3, running=RunningJobs())
    jobs.start_loop()
    yield jobs
    jobs.drain(timeout=5)


def attempt(
    start: Callable[[], Awaitable[Any]], *, limit_ms: int = 5_000, keep: Any = None
) -> AsyncRun:
    return AsyncRun(
        uuid.uuid4(), "t", threading.Event(), start, limit_ms, keep or (lambda value: value)
    )


def run(jobs: AsyncJobs, outcomes: Outcomes, run: AsyncRun) -> None:
    jobs.start(run, jobs.reserve(), outcomes.done_for(run.job_id))


def test_the_handler_runs_on_the_job_loop_and_its_kept_result_is_handed_on(
    jobs: AsyncJobs,
) -> None:
    outcomes = Outcomes()

    async def handler() -> dict[str, str]:
        return {"loop": threading.current_thread().name}

    job = attempt(handler, keep=lambda value: {**value, "kept": True})
    run(jobs, outcomes, job)
    result, exception, thread = outcomes.wait(job.job_id)
    assert (result, exception) == ({"loop": "ferry-async-jobs", "kept": True}, None)
    assert thread != "ferry-async-jobs"  # recorded off the loop: a retry's record waits


def test_what_the_handler_or_its_keep_raises_is_its_outcome(jobs: AsyncJobs) -> None:
    outcomes = Outcomes()

    async def fails() -> None:
        raise ValueError("bad")

    async def returns() -> int:
        return 1

    def too_large(value: Any) -> Any:
        raise OverflowError("too large")

    failing, unkept = attempt(fails), attempt(returns, keep=too_large)
    run(jobs, outcomes, failing)
    run(jobs, outcomes, unkept)
    assert repr(outcomes.wait(failing.job_id)[1]) == "ValueError('bad')"
    assert repr(outcomes.wait(unkept.job_id)[1]) == "OverflowError('too large')"


def test_the_time_limit_ends_a_handler_while_it_awaits(jobs: AsyncJobs) -> None:
    outcomes = Outcomes()

    async def sleeps() -> None:
        await asyncio.sleep(3600)

    async def times_out() -> None:
        raise TimeoutError("upstream")

    slow, own = attempt(sleeps, limit_ms=50), attempt(times_out, limit_ms=5_000)
    run(jobs, outcomes, slow)
    run(jobs, outcomes, own)
    assert isinstance(outcomes.wait(slow.job_id)[1], TimeLimitExceeded)
    # A TimeoutError of the handler's own is not the limit.
    assert repr(outcomes.wait(own.job_id)[1]) == "TimeoutError('upstream')"


def test_an_abort_cancels_the_awaiting_handler_and_sets_aborted(jobs: AsyncJobs) -> None:
    outcomes = Outcomes()
    started = threading.Event()

    async def sleeps() -> None:
        started.set()
        await asyncio.sleep(3600)

    job = attempt(sleeps)
    run(jobs, outcomes, job)
    assert started.wait(5)
    assert jobs.running.ids() == [job.job_id]  # its lease is renewed while it runs
    assert jobs.running.abort({job.job_id, uuid.uuid4()}) == [job.job_id]
    assert isinstance(outcomes.wait(job.job_id)[1], JobAborted)
    assert job.cancelled.is_set()
    assert jobs.running.ids() == []


def test_a_slot_is_taken_until_the_handler_ends(jobs: AsyncJobs) -> None:
    outcomes = Outcomes()
    go = threading.Event()

    async def waits() -> None:
        while not go.is_set():
            await asyncio.sleep(0.005)

    held = [attempt(waits) for _ in range(3)]  # the limit
    for job in held:
        run(jobs, outcomes, job)
    fourth: list[Any] = []
    waiter = threading.Thread(target=lambda: fourth.append(jobs.reserve()))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # every slot is taken
    go.set()
    waiter.join(5)
    assert not waiter.is_alive() and fourth
    fourth[0].release()
    fourth[0].release()  # once only: a second release frees nothing more


def test_drain_waits_for_running_handlers(jobs: AsyncJobs) -> None:
    outcomes = Outcomes()

    async def naps() -> str:
        await asyncio.sleep(0.2)
        return "done"

    job = attempt(naps)
    run(jobs, outcomes, job)
    jobs.drain(timeout=5)
    assert outcomes.got[job.job_id][:2] == ("done", None)


def test_the_handover_is_taken_once() -> None:
    async def handler() -> None: ...

    job = attempt(handler)
    hand_over(job)
    assert take_handover() is job
    assert take_handover() is None


def test_an_abort_as_the_attempt_ends_never_loses_its_outcome(jobs: AsyncJobs) -> None:
    # The abort arrives after the handler returned, before the attempt is unregistered
    # (here: while its result is kept): its cancel must not land on what follows.
    outcomes = Outcomes()

    async def quick() -> str:
        return "done"

    runs = []
    for _ in range(20):
        job_id = uuid.uuid4()

        def keep(value: Any, job_id: uuid.UUID = job_id) -> Any:
            jobs.running.abort({job_id})
            return value

        run_ = AsyncRun(job_id, "t", threading.Event(), quick, 5_000, keep)
        runs.append(run_)
        run(jobs, outcomes, run_)
    for run_ in runs:
        assert outcomes.wait(run_.job_id)[:2] == ("done", None)
