"""The lifecycle middleware without servers: what it claims, records and frees, for sync
and async handlers, with fakes for the writer and the job loop."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from dramatiq.middleware import SkipMessage

from ferry.db.jobs import Enqueued
from ferry.db.models import JobStatus
from ferry.db.transitions import ClaimedJob, Outcome
from ferry.jobs.registry import REGISTRY, job
from ferry.queue.messages import JOBS_QUEUE
from ferry.settings import Settings
from ferry.worker.async_jobs import AsyncRun, Slot, hand_over
from ferry.worker.bundles import Durations
from ferry.worker.claims_ahead import ClaimsAhead
from ferry.worker.lifecycle import JobLifecycle
from ferry.worker.running import set_result

BROKER = object()  # not a GroupAckRedisBroker: outcomes are written while the thread waits


class Writer:
    def __init__(self, claimable: bool = True) -> None:
        self.claimable = claimable
        self.finished: list[Outcome] = []
        self.claimed: list[uuid.UUID] = []  # on the worker thread, one at a time
        self.claimed_ahead: list[uuid.UUID] = []  # as the consumer fetched the message

    def claim(self, job_id: uuid.UUID) -> ClaimedJob | None:
        self.claimed.append(job_id)
        return self._claimed(job_id)

    def claim_then(self, job_id: uuid.UUID, then: Callable[[ClaimedJob | None], None]) -> None:
        self.claimed_ahead.append(job_id)
        then(self._claimed(job_id))  # committed at once

    def _claimed(self, job_id: uuid.UUID) -> ClaimedJob | None:
        if not self.claimable:
            return None
        return ClaimedJob(job_id, "t", "lc_async", {}, 1, 3, retry_base_ms=7, retry_cap_ms=9)

    def finish(self, outcome: Outcome) -> JobStatus:
        self.finished.append(outcome)
        return outcome.status


class Sender:
    def __init__(self) -> None:
        self.sent: list[Enqueued] = []

    def send_now(self, jobs: list[Enqueued]) -> None:
        self.sent.extend(jobs)


class Jobs:
    """The job loop, counting its slots; `start` keeps what it was given."""

    def __init__(self) -> None:
        self.taken = 0
        self.started: list[tuple[AsyncRun, Slot, Any]] = []

    def reserve(self) -> Slot:
        self.taken += 1
        return Slot(self._free)

    def _free(self) -> None:
        self.taken -= 1

    def start(self, run: AsyncRun, slot: Slot, done: Any) -> None:
        self.started.append((run, slot, done))


@pytest.fixture(autouse=True)
def types() -> Iterator[None]:
    @job("lc_async")
    async def lc_async(payload: dict[str, Any]) -> None: ...

    @job("lc_sync")
    def lc_sync(payload: dict[str, Any]) -> None: ...

    yield
    REGISTRY.pop("lc_async")
    REGISTRY.pop("lc_sync")


def lifecycle(
    writer: Writer, jobs: Jobs, sender: Sender | None = None, threads: int = 0
) -> JobLifecycle:
    """`threads`: the worker threads the claims ahead count on (none: every message is
    claimed by the thread that takes it)."""
    claims = ClaimsAhead(writer, threads)  # type: ignore[arg-type]
    services = SimpleNamespace(
        writer=writer,
        async_jobs=jobs,
        feeder=None,
        claims=claims,
        pauses=claims.pauses,
        durations=Durations(),
    )
    return JobLifecycle(Settings(), services, sender or Sender())  # type: ignore[arg-type]


def message(actor: str) -> Any:
    return SimpleNamespace(
        queue_name=JOBS_QUEUE,
        actor_name=actor,
        args=[str(uuid.uuid4())],
        message_timestamp=0,
        options={"redis_message_id": "m"},
    )


def test_a_paused_tenants_message_is_skipped_unclaimed_and_others_run() -> None:
    writer, jobs = Writer(), Jobs()
    middleware = lifecycle(writer, jobs, threads=4)
    middleware.services.pauses.replace({("paused", "")})
    held = message("lc_sync")
    held.options["tenant"] = "paused"
    middleware.services.claims.fetched(held)  # not claimed ahead either
    with pytest.raises(SkipMessage):
        middleware.before_process_message(BROKER, held)  # type: ignore[arg-type]
    assert (writer.claimed, writer.claimed_ahead, writer.finished) == ([], [], [])
    other = message("lc_sync")
    other.options["tenant"] = "other"
    middleware.before_process_message(BROKER, other)  # type: ignore[arg-type]
    assert writer.claimed == [uuid.UUID(other.args[0])]


def test_an_async_job_takes_a_slot_before_its_claim_and_frees_it_if_skipped() -> None:
    jobs = Jobs()
    middleware = lifecycle(Writer(claimable=False), jobs)
    with pytest.raises(SkipMessage):
        middleware.before_process_message(BROKER, message("lc_async"))  # type: ignore[arg-type]
    assert jobs.taken == 1
    middleware.after_skip_message(BROKER, message("lc_async"))  # type: ignore[arg-type]
    assert jobs.taken == 0


def test_a_sync_job_takes_no_slot() -> None:
    writer, jobs = Writer(), Jobs()
    middleware = lifecycle(writer, jobs)
    middleware.before_process_message(BROKER, message("lc_sync"))  # type: ignore[arg-type]
    assert jobs.taken == 0
    set_result({"ok": True})
    middleware.after_process_message(BROKER, message("lc_sync"))  # type: ignore[arg-type]
    assert [(o.status, o.result) for o in writer.finished] == [(JobStatus.COMPLETED, {"ok": True})]


def test_an_async_job_that_fails_before_its_handover_frees_its_slot_and_is_recorded() -> None:
    writer, jobs, sender = Writer(), Jobs(), Sender()
    middleware = lifecycle(writer, jobs, sender)
    msg = message("lc_async")
    middleware.before_process_message(BROKER, msg)  # type: ignore[arg-type]
    middleware.after_process_message(
        BROKER,  # type: ignore[arg-type]
        msg,
        exception=ValueError("payload"),
    )
    assert jobs.taken == 0 and not jobs.started
    [outcome] = writer.finished
    assert (outcome.status, outcome.error) == (JobStatus.PENDING, "ValueError: payload")
    # The job's own backoff (7 ms, capped at 9) is the delay, not its type's.
    assert 0 <= outcome.retry_delay_ms <= 9
    # Its next attempt is sent once this one is recorded, with that delay.
    assert sender.sent == [
        Enqueued(uuid.UUID(msg.args[0]), "lc_async", "t", outcome.retry_delay_ms)
    ]


def test_a_handed_over_async_job_keeps_its_slot_and_is_recorded_when_it_ends() -> None:
    writer, jobs = Writer(), Jobs()
    middleware = lifecycle(writer, jobs)
    msg = message("lc_async")
    middleware.before_process_message(BROKER, msg)  # type: ignore[arg-type]

    async def start() -> None: ...

    run = AsyncRun(uuid.UUID(msg.args[0]), "t", threading.Event(), start, 1_000, lambda v: v)
    hand_over(run)
    middleware.after_process_message(BROKER, msg)  # type: ignore[arg-type]
    [(started, slot, done)] = jobs.started
    assert started is run and jobs.taken == 1  # the task releases the slot, not the thread
    assert writer.finished == []  # nothing recorded until the task ends
    slot.release()
    done({"n": 1}, None)
    assert [(o.status, o.result) for o in writer.finished] == [(JobStatus.COMPLETED, {"n": 1})]
    # Its duration is no sync job's: the type never goes several to a message.
    assert middleware.services.durations.typical("lc_async") is None


def test_a_message_claimed_as_it_was_fetched_runs_without_a_claim_of_its_thread() -> None:
    writer, jobs = Writer(), Jobs()
    middleware = lifecycle(writer, jobs, threads=1)
    msg = message("lc_sync")
    middleware.services.claims.fetched(msg)
    middleware.before_process_message(BROKER, msg)  # type: ignore[arg-type]
    assert writer.claimed == []  # it was claimed ahead
    middleware.after_process_message(BROKER, msg)  # type: ignore[arg-type]
    assert [o.job_id for o in writer.finished] == [uuid.UUID(msg.args[0])]


def test_a_job_cancelled_while_its_claim_waited_is_skipped() -> None:
    writer, jobs = Writer(), Jobs()
    middleware = lifecycle(writer, jobs, threads=1)
    msg = message("lc_sync")
    middleware.services.claims.fetched(msg)
    middleware.services.claims.abort({uuid.UUID(msg.args[0])})  # seen by the heartbeat
    with pytest.raises(SkipMessage):
        middleware.before_process_message(BROKER, msg)  # type: ignore[arg-type]
    middleware.after_skip_message(BROKER, msg)  # type: ignore[arg-type]
    assert writer.claimed == [] and writer.finished == []
