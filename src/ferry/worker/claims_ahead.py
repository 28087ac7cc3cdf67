"""Claims sent as messages are fetched, so that no worker thread waits for its own.

Dramatiq's consumer fetches messages ahead of the worker threads; a thread that
claims its job only once it takes the message waits a whole write for it. Here
the consumer's thread submits each message's claim as it is fetched, and the
writer writes the claims of a fetch in one or two statements (what arrives
while a write runs goes into the next): the thread that takes the message finds
its job claimed, or waits for the rest of that write.

A job claimed ahead is RUNNING already, so it should not wait behind long jobs
for a thread: one claim is sent ahead per thread that has taken no message,
none while all have. Only while the sync jobs are short (a moving average under
`SHORT_JOB_S`) are `AHEAD_PER_SHORT_IDLE_THREAD` sent per thread not running a
job (one waiting for its claim runs a short job next), so that a thread finds
its next claims made; such a claim waits a few short jobs' time, though a long
job among short ones can keep one waiting until a thread is free. Messages
fetched beyond that wait their turn in fetch order (the order the threads take
them in) and are claimed as threads come free, or by the thread that takes one
first. The consumer fetches as many as that needs (`wanted`), and never fewer
than Dramatiq would. Async handlers' messages are claimed when taken too: their
thread waits for a slot on the job loop before the claim
(`ferry.worker.async_jobs`).

A job claimed ahead and not taken yet has its lease renewed by the heartbeat,
and a cancel marks it, so that the thread that takes it skips it. Once the
worker stops, nothing more is claimed ahead; Dramatiq returns the messages its
threads never took to the queue, and their claims are given back first
(PENDING again, the attempt not counted), so that another worker claims them
at once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ferry.db.transitions import ClaimedJob
from ferry.jobs.registry import REGISTRY, is_async
from ferry.queue.messages import JOBS_QUEUE, tenant_of
from ferry.worker.bundles import OVERDUE_S, moved
from ferry.worker.pauses import Pauses
from ferry.worker.writer import Reply, StatusWriter

log = logging.getLogger(__name__)

# A thread that runs jobs in less than a few writes' time must find its next few
# claims made; a claim sent that far ahead waits about that many jobs' time at most.
SHORT_JOB_S = 0.05
AHEAD_PER_SHORT_IDLE_THREAD = 4
# At shutdown, how long the claims of returning messages may take to be given back;
# past it their leases expire (the database is down, say).
GIVE_BACK_TIMEOUT_S = 10


@dataclass(eq=False)
class Behind:
    """The jobs of one bundle waiting behind the job its thread runs: what gives back
    those that wait too long (called on a pool thread), the ids it was given, and
    since when they wait (their claim)."""

    give_back: Callable[[list[ClaimedJob]], None]
    taken: set[uuid.UUID] = field(default_factory=set)
    since: float = field(default_factory=time.monotonic)


class Claim(Reply):
    """One claim sent ahead: its job once committed (None if it was not claimable)."""

    __slots__ = ("aborted", "behind", "taken")

    def __init__(self, behind: Behind | None = None) -> None:
        super().__init__()
        self.taken = False  # by a worker thread
        self.aborted = False  # cancelled (or deleted) while it waited
        self.behind = behind  # a job waiting in a bundle: its bundle's

    def wait(self, timeout: float = -1) -> ClaimedJob | None:
        """The claimed job; None if the claim failed, the job was cancelled since, or it
        was not committed within `timeout` seconds."""
        job: ClaimedJob | None = super().wait(timeout)
        return None if self.aborted else job


class ClaimsAhead:
    def __init__(
        self, writer: StatusWriter, threads: int = 0, pauses: Pauses | None = None
    ) -> None:
        """`threads`: the worker threads that take messages (set at the worker's boot);
        `pauses`: the jobs held, whose messages their threads skip unclaimed."""
        self.writer = writer
        self.pauses = pauses or Pauses()
        self.threads = threads
        self.stopping = False  # the worker stops: no more claims ahead
        self._lock = threading.Lock()
        self._sent: dict[str, Claim] = {}  # Redis message id -> its claim, until taken
        # Fetched, to be claimed in this order: message id -> (job id, tenant, job type).
        self._queued: dict[str, tuple[uuid.UUID, str | None, str]] = {}
        self._waiting: dict[uuid.UUID, Claim] = {}  # claimed jobs no thread took yet
        # Each thread adds and removes only its own entries (no lock); the counts are
        # read under the lock, and a count a moment old only sends a claim late or early.
        self._taken: set[int] = set()  # threads that took a message, until free()
        self._running: dict[int, float] = {}  # those running a sync job -> since when
        self.typical_s = float("inf")  # how long a sync job takes: unknown, so long

    # -- the consumer's thread ---------------------------------------------------------

    def fetched(self, message: Any) -> None:
        """Claim `message`'s job now, or once there is room ahead of the threads."""
        job_id = _claimable_ahead(message)
        tenant = tenant_of(message)
        if job_id is None or self.pauses.holds(tenant, message.actor_name):
            return
        message_id = message.options["redis_message_id"]
        with self._lock:
            if message_id in self._sent or message_id in self._queued:
                return  # fetched again (handed back by Dramatiq's maintenance): claimed once
            self._queued[message_id] = (job_id, tenant, message.actor_name)
        self._send()

    def _send(self) -> None:
        """Send the claims of queued messages while there are threads to take them."""
        with self._lock:
            room = min(len(self._queued), self._ahead() - len(self._sent))
            if room <= 0:
                return
            sending: list[tuple[uuid.UUID, Claim]] = []
            while len(sending) < room and self._queued:
                message_id, (job_id, tenant, job_type) = next(iter(self._queued.items()))
                del self._queued[message_id]
                if self.pauses.holds(tenant, job_type):
                    continue  # paused since it was fetched: its thread skips it unclaimed
                claim = self._sent[message_id] = Claim()  # fetched() let no id in twice
                sending.append((job_id, claim))
        for job_id, claim in sending:
            self.writer.claim_then(job_id, partial(self._claimed, claim))

    def _ahead(self) -> int:
        if self.stopping:
            return 0
        if self.typical_s < SHORT_JOB_S:
            # A thread waiting for its claim runs a short job next: count it idle.
            return AHEAD_PER_SHORT_IDLE_THREAD * (self.threads - len(self._running))
        return self.threads - len(self._taken)

    def wanted(self) -> int:
        """How many messages the consumer should hold: one per thread, and the claims
        ahead."""
        return self.threads + self._ahead()

    def _claimed(self, claim: Claim, job: ClaimedJob | None) -> None:
        # On the writer's loop, once the claim is committed; the job is set under the
        # lock so that a thread taking the claim meanwhile sees it and renews no lease.
        with self._lock:
            claim.value = job
            if job is not None and not claim.taken:
                self._waiting[job.id] = claim
        claim.set(job)

    # -- worker threads ------------------------------------------------------------------

    def take(self, message: Any) -> Claim | None:
        """The claim sent for `message`, if one was (else the caller claims it). This thread
        takes no other message until `free()`."""
        message_id = message.options.get("redis_message_id")
        self._taken.add(threading.get_ident())
        with self._lock:
            claim = self._sent.pop(message_id, None)
            if claim is None:
                self._queued.pop(message_id, None)
                return None
            claim.taken = True
            if claim.value is not None:
                self._waiting.pop(claim.value.id, None)
        self._send()
        return claim

    def started(self) -> None:
        """This thread's sync job starts: how long it runs tells whether jobs are short."""
        self._running[threading.get_ident()] = time.monotonic()

    def free(self) -> None:
        """This thread is done with its message."""
        thread = threading.get_ident()
        self._taken.discard(thread)
        since = self._running.pop(thread, None)
        if since is not None:
            known = None if self.typical_s == float("inf") else self.typical_s
            self.typical_s = moved(known, time.monotonic() - since)
        if self._queued:
            self._send()

    # -- the jobs of a bundle (ferry.worker.bundles) ------------------------------------------

    def waiting(self, jobs: Iterable[ClaimedJob], behind: Behind) -> None:
        """Claimed jobs that wait on a thread for the ones before them in their message:
        their leases are renewed and a cancel marks them, as for claims ahead; past
        `OVERDUE_S` the heartbeat gives them back (`overdue`)."""
        with self._lock:
            for job in jobs:
                claim = self._waiting[job.id] = Claim(behind)
                claim.value = job

    def starting(self, job: ClaimedJob) -> bool:
        """A job of `waiting` starts now: False if it was cancelled (or deleted), or given
        back, meanwhile."""
        with self._lock:
            claim = self._pop_waiting(job)
        return claim is not None and not claim.aborted

    def forget(self, jobs: Iterable[ClaimedJob]) -> list[ClaimedJob]:
        """Jobs of `waiting` that will not start here: those still waiting, to give back
        (not those cancelled, or given back by `overdue`, meanwhile)."""
        with self._lock:
            return [job for job in jobs if self._pop_waiting(job) is not None]

    def _pop_waiting(self, job: ClaimedJob) -> Claim | None:
        """`job`'s entry in `waiting`, if it is still there. Under the lock. A job given
        back can be claimed again here, ahead: that claim is another entry, not this."""
        claim = self._waiting.get(job.id)
        if claim is None or claim.value is not job:
            return None
        del self._waiting[job.id]
        return claim

    # -- the heartbeat ---------------------------------------------------------------------

    def ids(self) -> list[uuid.UUID]:
        """The jobs claimed ahead that no thread took yet: their leases need renewing."""
        with self._lock:
            return list(self._waiting)

    def overdue(self, after_s: float = OVERDUE_S) -> list[tuple[Behind, list[ClaimedJob]]]:
        """The jobs that have waited in a bundle longer than `after_s` (the one running
        before them is slow), by bundle: taken out of `waiting`, so that their thread
        skips them, and added to their bundle's `taken`."""
        since = time.monotonic() - after_s
        late: dict[Behind, list[ClaimedJob]] = {}
        with self._lock:
            for job_id, claim in list(self._waiting.items()):
                if claim.behind is None or claim.behind.since >= since:
                    continue
                del self._waiting[job_id]
                assert claim.value is not None
                claim.behind.taken.add(job_id)
                late.setdefault(claim.behind, []).append(claim.value)
        return list(late.items())

    def abort(self, job_ids: Iterable[uuid.UUID]) -> None:
        """These jobs are no longer RUNNING: whichever thread takes one skips it."""
        with self._lock:
            for job_id in job_ids:
                if (claim := self._waiting.pop(job_id, None)) is not None:
                    claim.aborted = True

    # -- shutdown ----------------------------------------------------------------------------

    def requeueing(self, messages: Iterable[Any], timeout: float = GIVE_BACK_TIMEOUT_S) -> None:
        """Blocking, `timeout` seconds at most: give back the claims of messages about to
        return to the queue."""
        deadline = time.monotonic() + timeout
        with self._lock:
            ids = [message.options.get("redis_message_id") for message in messages]
            for message_id in ids:
                self._queued.pop(message_id, None)
            claims = [claim for message_id in ids if (claim := self._sent.pop(message_id, None))]
            for claim in claims:
                claim.taken = True  # by the shutdown: a late commit renews no lease
        jobs = [job for claim in claims if (job := claim.wait(_left(deadline))) is not None]
        with self._lock:
            for job in jobs:
                self._waiting.pop(job.id, None)
        if jobs:
            given_back = self.writer.unclaim(jobs, _left(deadline))
            log.info("gave back %d of %d claims of jobs whose messages return to the queue",
                     sum(status is not None for status in given_back), len(claims))  # fmt: skip


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _claimable_ahead(message: Any) -> uuid.UUID | None:
    """The job id of a message whose claim may be sent ahead: a sync job's, due now. An
    async job's thread takes a slot before its claim; a message Dramatiq has no actor
    for never reaches a thread; a malformed one is left to the thread that takes it."""
    if message.queue_name != JOBS_QUEUE or "eta" in message.options:
        return None
    if "more" in message.options:  # several jobs: claimed together by their thread
        return None
    if message.actor_name not in REGISTRY or is_async(message.actor_name):
        return None
    if "redis_message_id" not in message.options:
        return None
    try:
        return uuid.UUID(message.args[0])
    except (IndexError, TypeError, ValueError, AttributeError):
        return None
