"""Claims sent as messages are fetched (`ferry.worker.claims_ahead`), without servers: the
writer is a fake that keeps each claim's callback until the test commits it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from ferry.db.models import JobStatus
from ferry.db.transitions import ClaimedJob
from ferry.jobs.registry import REGISTRY, job
from ferry.queue.messages import JOBS_QUEUE
from ferry.worker import claims_ahead
from ferry.worker.claims_ahead import AHEAD_PER_SHORT_IDLE_THREAD, Behind, ClaimsAhead

Then = Callable[[ClaimedJob | None], None]


class Writer:
    def __init__(self) -> None:
        self.sent: dict[uuid.UUID, Then] = {}  # claims not committed yet, in order
        self.unclaimed: list[list[ClaimedJob]] = []

    def claim_then(self, job_id: uuid.UUID, then: Then) -> None:
        self.sent[job_id] = then

    def commit(self, claimable: bool = True) -> list[ClaimedJob]:
        """Commit every claim sent so far: the jobs claimed."""
        sent, self.sent = self.sent, {}
        claimed = []
        for job_id, then in sent.items():
            job = ClaimedJob(job_id, "t", "ca_sync", {}, 1, 3) if claimable else None
            then(job)
            claimed += [job] if job else []
        return claimed

    def unclaim(self, jobs: list[ClaimedJob], timeout: float) -> list[JobStatus | None]:
        self.unclaimed.append(jobs)
        return [JobStatus.PENDING] * len(jobs)


@pytest.fixture(autouse=True)
def types() -> Iterator[None]:
    @job("ca_sync")
    def ca_sync(payload: dict[str, Any]) -> None: ...

    @job("ca_async")
    async def ca_async(payload: dict[str, Any]) -> None: ...

    yield
    REGISTRY.pop("ca_sync")
    REGISTRY.pop("ca_async")


def fetched(count: int, actor: str = "ca_sync", **options: Any) -> list[Any]:
    return [
        SimpleNamespace(
            queue_name=JOBS_QUEUE,
            actor_name=actor,
            args=[str(uuid.uuid4())],
            options={"redis_message_id": f"r{uuid.uuid4().hex}", **options},
        )
        for _ in range(count)
    ]


def job_id(message: Any) -> uuid.UUID:
    return uuid.UUID(message.args[0])


def on_thread(fn: Callable[[], Any]) -> Any:
    """`fn()` on a thread of its own (the claims count busy threads by identity)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join(5)
    return result[0]


def short_jobs(claims: ClaimsAhead) -> None:
    claims.typical_s = claims_ahead.SHORT_JOB_S / 2


def test_one_claim_per_idle_thread_until_jobs_are_known_to_be_short() -> None:
    writer = Writer()
    claims = ClaimsAhead(writer, threads=2)  # type: ignore[arg-type]
    messages = fetched(12)
    for message in messages:
        claims.fetched(message)
    # Nothing is known of the jobs yet: as many claims as threads to take them.
    assert list(writer.sent) == [job_id(message) for message in messages[:2]]
    short_jobs(claims)
    claims.fetched(more := fetched(1)[0])
    ahead = 2 * AHEAD_PER_SHORT_IDLE_THREAD
    assert list(writer.sent) == [job_id(m) for m in [*messages, more][:ahead]]  # fetch order
    assert claims.wanted() == 2 + ahead


def test_busy_threads_leave_no_claim_ahead_until_one_is_free() -> None:
    writer = Writer()
    claims = ClaimsAhead(writer, threads=1)  # type: ignore[arg-type]
    first, second = fetched(2)
    claims.fetched(first)
    assert list(writer.sent) == [job_id(first)]
    writer.commit()
    done = threading.Event()
    go = threading.Event()

    def run() -> None:
        claim = claims.take(first)
        assert claim is not None and claim.wait() is not None
        claims.started()  # its job runs
        claims.fetched(second)
        done.set()
        assert go.wait(5)
        claims.free()

    thread = threading.Thread(target=run)
    thread.start()
    assert done.wait(5)
    assert writer.sent == {}  # the second waits: it would wait behind a running job
    assert claims.wanted() == 1
    go.set()
    thread.join(5)
    assert list(writer.sent) == [job_id(second)]  # claimed once the thread came free


def test_a_message_taken_before_its_claim_was_sent_is_the_takers_to_claim() -> None:
    writer = Writer()
    claims = ClaimsAhead(writer, threads=1)  # type: ignore[arg-type]
    first, second, third = fetched(3)
    for message in (first, second, third):
        claims.fetched(message)
    assert claims.take(second) is None  # not claimed ahead: the thread claims it
    claims.free()
    assert list(writer.sent) == [job_id(first)]

    def take_first() -> bool:
        taken = claims.take(first)
        claims.free()
        return taken is not None

    assert on_thread(take_first)
    # The room `first` left goes to `third`; `second` is never claimed twice.
    assert list(writer.sent) == [job_id(first), job_id(third)]


def test_async_delayed_unknown_and_malformed_messages_are_not_claimed_ahead() -> None:
    writer = Writer()
    claims = ClaimsAhead(writer, threads=4)  # type: ignore[arg-type]
    [malformed] = fetched(1)
    malformed.args = ["not a uuid"]
    for message in (*fetched(1, "ca_async"), *fetched(1, eta=1), *fetched(1, "unknown"),
                    malformed):  # fmt: skip
        claims.fetched(message)
        assert claims.take(message) is None  # the thread that takes it sees to it
        claims.free()
    assert writer.sent == {}


def test_a_message_fetched_again_is_claimed_once() -> None:
    writer = Writer()
    claims = ClaimsAhead(writer, threads=4)  # type: ignore[arg-type]
    [message] = fetched(1)
    claims.fetched(message)
    writer.commit()
    claims.fetched(message)  # handed back by Dramatiq's maintenance, fetched anew
    assert writer.sent == {}
    assert claims.ids() == [job_id(message)]  # the one claim, still to be taken


def test_claims_run_further_ahead_once_jobs_prove_short_and_none_once_stopping() -> None:
    writer = Writer()
    claims = ClaimsAhead(writer, threads=2)  # type: ignore[arg-type]
    assert claims.wanted() == 2 + 2  # unknown jobs: one claim per idle thread
    claims.started()
    claims.free()  # a job of a few microseconds
    assert claims.typical_s < claims_ahead.SHORT_JOB_S
    assert claims.wanted() == 2 + 2 * AHEAD_PER_SHORT_IDLE_THREAD
    claims.stopping = True
    assert claims.wanted() == 2
    claims.fetched(fetched(1)[0])
    assert writer.sent == {}


def test_a_claim_waits_for_its_commit_and_says_when_the_job_was_not_claimable() -> None:
    writer = Writer()
    claims = ClaimsAhead(writer, threads=2)  # type: ignore[arg-type]
    claimable, gone = fetched(2)
    claims.fetched(claimable)
    [claimable_id] = writer.sent
    claim = claims.take(claimable)
    assert claim is not None
    waited: list[Any] = []
    thread = threading.Thread(target=lambda: waited.append(claim and claim.wait()))
    thread.start()
    thread.join(0.05)
    assert waited == []  # not committed yet
    writer.commit()
    thread.join(5)
    assert [job.id for job in waited] == [claimable_id]
    claims.fetched(gone)
    writer.commit(claimable=False)  # cancelled or deleted meanwhile
    claim = claims.take(gone)
    assert claim is not None and claim.wait() is None
    assert claims.ids() == []


def test_waiting_claims_are_renewed_and_a_cancelled_one_is_skipped() -> None:
    writer = Writer()
    claims = ClaimsAhead(writer, threads=2)  # type: ignore[arg-type]
    kept, cancelled = fetched(2)
    claims.fetched(kept)
    claims.fetched(cancelled)
    writer.commit()
    assert sorted(claims.ids()) == sorted([job_id(kept), job_id(cancelled)])
    claims.abort({job_id(cancelled)})  # the heartbeat found it no longer RUNNING
    assert claims.ids() == [job_id(kept)]
    taken = claims.take(cancelled)
    assert taken is not None and taken.wait() is None  # its thread skips it
    taken = claims.take(kept)
    assert taken is not None and taken.wait() is not None
    assert claims.ids() == []  # running now: the running jobs' lease is renewed instead


def test_messages_returned_to_the_queue_give_their_claims_back_first() -> None:
    writer = Writer()
    claims = ClaimsAhead(writer, threads=3)  # type: ignore[arg-type]
    kept, returned, failed, queued = fetched(4)
    for message in (kept, returned, failed, queued):  # `queued`: beyond the threads
        claims.fetched(message)
    then = writer.sent.pop(job_id(failed))
    [kept_job, returned_job] = writer.commit()
    then(None)  # its job was not claimable
    claims.requeueing([returned, failed, queued])
    assert writer.unclaimed == [[returned_job]]  # only what this worker claimed
    assert claims.ids() == [kept_job.id]  # still this worker's to run
    assert claims.take(queued) is None
    taken = claims.take(kept)
    assert taken is not None and taken.wait() == kept_job
    assert writer.sent == {}  # the returned messages are never claimed again here


def test_at_shutdown_a_claim_not_committed_in_time_is_left_to_its_lease() -> None:
    writer = Writer()
    claims = ClaimsAhead(writer, threads=2)  # type: ignore[arg-type]
    committed, late = fetched(2)
    claims.fetched(committed)
    claims.fetched(late)
    then = writer.sent.pop(job_id(late))  # its write is still under way
    [committed_job] = writer.commit()
    claims.requeueing([committed, late], timeout=0.05)
    assert writer.unclaimed == [[committed_job]]
    then(None)  # a late commit finds no one waiting: nothing breaks
    assert claims.ids() == []


def test_a_paused_tenants_messages_are_not_claimed_ahead_even_once_queued() -> None:
    writer = Writer()
    claims = ClaimsAhead(writer, threads=1)  # type: ignore[arg-type]
    first, queued, late = fetched(3, tenant="t-paused")
    other = fetched(1, tenant="t-free")[0]
    claims.fetched(first)
    claims.fetched(queued)  # no room ahead yet: queued, to be claimed later
    assert list(writer.sent) == [job_id(first)]  # claimed before the pause
    claims.pauses.replace({("t-paused", "")})
    claims.fetched(late)  # fetched after the pause was read: not even queued
    claims.fetched(other)
    writer.commit()

    def run_first() -> None:
        claims.take(first)
        claims.free()  # its thread is free again

    on_thread(run_first)
    # The queued one is passed over (its thread will skip it unclaimed); the other claimed.
    assert list(writer.sent) == [job_id(other)]


def bundle_jobs(count: int) -> list[ClaimedJob]:
    return [ClaimedJob(uuid.uuid4(), "t", "ca_sync", {}, 1, 3) for _ in range(count)]


def behind() -> Behind:
    return Behind(lambda jobs: None)


def test_jobs_waiting_behind_a_slow_one_are_overdue_once_and_their_thread_skips_them() -> None:
    claims = ClaimsAhead(Writer(), threads=2)  # type: ignore[arg-type]
    first, second = bundle_jobs(3), bundle_jobs(2)
    first_behind, second_behind = behind(), behind()
    claims.waiting(first, first_behind)
    assert claims.overdue(after_s=60) == []  # not waited long enough
    assert claims.starting(first[0])  # its thread got to it in time
    claims.waiting(second, second_behind)
    claims.abort({first[2].id})  # cancelled meanwhile: not given back, only skipped

    overdue = dict(claims.overdue(after_s=-1))

    assert overdue == {first_behind: [first[1]], second_behind: second}
    assert first_behind.taken == {first[1].id}
    assert second_behind.taken == {job.id for job in second}
    assert claims.overdue(after_s=-1) == []  # taken once
    assert claims.ids() == []  # given back: their leases are no longer renewed here
    assert not claims.starting(first[1])  # its thread skips it
    # The thread's own give-back (its budget spent) leaves them to the heartbeat's.
    assert claims.forget(first[1:] + second) == []


def test_a_thread_gives_back_only_the_jobs_still_waiting() -> None:
    claims = ClaimsAhead(Writer(), threads=2)  # type: ignore[arg-type]
    jobs = bundle_jobs(3)
    claims.waiting(jobs, behind())
    claims.abort({jobs[0].id})
    assert claims.forget(jobs) == jobs[1:]
    assert claims.ids() == []


def test_a_job_given_back_and_claimed_again_ahead_is_not_given_back_twice() -> None:
    """Given back by the heartbeat, a job's message comes back to this worker and its
    claim is sent ahead: the bundle's thread, giving back what it has left, must not
    take that claim for its own (its UNCLAIM would undo the new claim)."""
    writer = Writer()
    claims = ClaimsAhead(writer, threads=2)  # type: ignore[arg-type]
    [job] = bundle_jobs(1)
    claims.waiting([job], behind())
    assert [jobs for _, jobs in claims.overdue(after_s=-1)] == [[job]]
    again = fetched(1)[0]
    again.args = [str(job.id)]
    claims.fetched(again)
    [claimed_again] = writer.commit()
    assert claims.forget([job]) == []  # the bundle's entry is gone
    assert not claims.starting(job)
    assert claims.ids() == [job.id]  # the new claim waits for its thread, renewed
    taken = claims.take(again)
    assert taken is not None and taken.wait() == claimed_again
