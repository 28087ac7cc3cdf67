"""The Dramatiq middleware that ties messages to job rows.

before a message runs: its job's claim (PENDING -> RUNNING), sent as the message
was fetched (`ferry.worker.claims_ahead`) or else now, in the tick's batch; a
claim that matches no row (deleted, cancelled, already taken) skips it.
after it ran: record COMPLETED, a scheduled retry (PENDING + nextRunAt) or
FAILED in the tick's batch. The ack never runs ahead of the status (group
commit): on Redis the thread moves on at once and the message's ack is held
until the write commits (`ferry.queue.group_ack`); a retry, and the in-process
broker, wait for the commit on the thread. An async handler's job is handed to
the process's job loop (`ferry.worker.async_jobs`): its thread moves on at once,
its ack is held (on Redis; the in-process broker's goes at once: its queue
lives and dies with this process, and recovery re-runs a job left RUNNING), and
its outcome is recorded here when its task ends.

A message of several jobs (`ferry.worker.bundles`) claims the ones its thread
runs together; the first runs as any job does, the others one after another
on the same thread, each under its own time limit and recorded as any job is;
the message's ack waits for all of them.

The writer and the feeder it hands to are the process's background services
(`ferry.worker.services`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

import dramatiq
from dramatiq.middleware import SkipMessage, TimeLimit

from ferry.db.jobs import Enqueued
from ferry.db.models import JobStatus
from ferry.db.transitions import ClaimedJob, Outcome
from ferry.jobs.registry import backoff_ms, is_async
from ferry.observability.logs import job_ids
from ferry.observability.metrics import recorder
from ferry.queue.group_ack import AckHold, GroupAckRedisBroker
from ferry.queue.messages import JOBS_QUEUE, job_ids_of, priority_of, tenant_of
from ferry.queue.sender import Sender
from ferry.settings import Settings
from ferry.worker.async_jobs import Slot, take_handover
from ferry.worker.bundles import BUDGET_S, BundleHold, split
from ferry.worker.claims_ahead import GIVE_BACK_TIMEOUT_S, Behind
from ferry.worker.outcome import decide
from ferry.worker.running import set_current_job, take_current_job, take_result
from ferry.worker.services import WorkerServices

log = logging.getLogger(__name__)

Hold = AckHold | BundleHold


@dataclass(slots=True)
class _Bundle:
    """The jobs of a thread's message claimed to run after its first."""

    first: ClaimedJob
    waiting: list[ClaimedJob]
    hold: BundleHold
    behind: Behind  # since when they wait, and those the heartbeat gave back


class JobLifecycle(dramatiq.Middleware):
    def __init__(self, settings: Settings, services: WorkerServices, sender: Sender) -> None:
        self.settings = settings
        self.services = services
        self.sender = sender  # a retry's next attempt, a bundle's jobs sent back
        # Per worker thread: when its running job was claimed, its async slot, and the
        # jobs of its message that wait for it (a bundle's).
        self._per_thread = threading.local()
        self.ran_after_first = 0  # jobs run after the first of their message (statistics)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if message.queue_name != JOBS_QUEUE:
            return
        claim = self.services.claims.take(message)
        if claim is None and self.services.pauses.holds(tenant_of(message), message.actor_name):
            # Its tenant or type is paused: the job stays PENDING, sent again on resume.
            log.debug("job %s is paused; skipping its message", message.args[0])
            self._per_thread.slot = None
            raise SkipMessage()
        self._per_thread.bundle = None
        if claim is not None:  # sent as the message was fetched (ferry.worker.claims_ahead)
            self._per_thread.slot = None
            job = claim.wait()
        elif "more" in message.options:
            job = self._claim_bundle(broker, message)
        else:
            job = self._claim(message)
        if job is None:
            log.debug("job %s is no longer PENDING; skipping its message", message.args[0])
            raise SkipMessage()
        if self.services.feeder is not None:
            self.services.feeder.started(job.tenant_id, message.options["redis_message_id"])
        # Dramatiq runs the actor and after_process_message on this same thread.
        self._per_thread.started = self._starting(job, message)

    def _starting(self, job: ClaimedJob, message: Any) -> float:
        """`job` of `message` starts on this thread: when."""
        if not is_async(message.actor_name):  # a thread hands an async job over at once
            self.services.claims.started()
        # Due when sent, or at its eta if delayed (both ms since the epoch).
        due_ms = max(message.message_timestamp, message.options.get("eta", 0))
        recorder.observe(
            "ferry_job_queue_wait_seconds", max(0.0, time.time() - due_ms / 1000), job.type
        )
        set_current_job(job)
        job_ids.set((str(job.id), job.tenant_id))  # on this thread's log records
        return time.monotonic()

    def _claim(self, message: Any) -> ClaimedJob | None:
        # An async job waits for a slot before its claim: its lease starts only once
        # it can run (ferry.worker.async_jobs).
        slot = self.services.async_jobs.reserve() if is_async(message.actor_name) else None
        self._per_thread.slot = slot
        try:
            return self.services.writer.claim(uuid.UUID(message.args[0]))
        except BaseException:
            self._free_slot()
            raise

    def _claim_bundle(self, broker: dramatiq.Broker, message: Any) -> ClaimedJob | None:
        """Claim the jobs of a message of several that this thread runs (the others go
        back to the queue one a message): the first of them; the rest wait for it."""
        assert isinstance(broker, GroupAckRedisBroker), "bundles come from the fair queue"
        ids = [uuid.UUID(job_id) for job_id in job_ids_of(message)]
        job_type = message.actor_name
        typical = None if is_async(job_type) else self.services.durations.typical(job_type)
        mine, others = split(ids, typical)
        self._send_back(message, others)
        broker.bundled.sent_back(message, len(others))  # no longer held by this worker
        if len(mine) == 1:  # alone, as a message of one job (an async one takes a slot first)
            recorder.observe("ferry_bundle_jobs", 1, job_type)
            return self._claim(message)
        self._per_thread.slot = None
        claimed = [job for job in self.services.writer.claim_all(mine) if job is not None]
        broker.bundled.sent_back(message, len(mine) - max(1, len(claimed)))  # not claimable
        if len(claimed) > 1:
            waiting = claimed[1:]
            behind = Behind(partial(self._return_overdue, broker, message))
            self.services.claims.waiting(waiting, behind)
            # One ack for all: let go once each job is recorded, or given back.
            last = partial(self._release, message)
            hold = BundleHold(len(claimed), broker.hold_ack(message), last)
            self._per_thread.bundle = _Bundle(claimed[0], waiting, hold, behind)
        if len(claimed) == 1:
            recorder.observe("ferry_bundle_jobs", 1, job_type)
        return claimed[0] if claimed else None

    def _send_back(self, message: Any, job_ids: list[uuid.UUID]) -> None:
        """Jobs of a bundle this thread will not run: back at the head of Dramatiq's queue, one a
        message (they have had their tenant's turn). A failed send leaves them PENDING for
        the recovery pass."""
        if not job_ids:
            return
        tenant, priority = tenant_of(message), priority_of(message)
        assert tenant is not None, "a bundle is one tenant's"
        jobs = [
            Enqueued(job_id, message.actor_name, tenant, 0, priority=priority) for job_id in job_ids
        ]
        try:
            self.sender.send_ready(jobs)
        except Exception:
            log.exception("sending back %d jobs of a bundle failed; recovery will re-send them",
                          len(job_ids))  # fmt: skip

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        try:
            try:
                self._ended(broker, message, exception)
            finally:
                if (bundle := self._take_bundle()) is not None:
                    self._run_waiting(broker, message, bundle)
        finally:
            self.services.claims.free()  # this thread takes its next message

    def _run_waiting(self, broker: dramatiq.Broker, message: Any, bundle: _Bundle) -> None:
        """The rest of a bundle, one after another, while within its budget and the worker
        goes on; whatever is left then (or after an error) is given back."""
        left = list(bundle.waiting)
        ran = 1  # the message's first job
        try:
            actor = broker.get_actor(message.actor_name)
            limit = next(m for m in broker.middleware if isinstance(m, TimeLimit))
            while left:
                if (
                    time.monotonic() - bundle.behind.since > BUDGET_S
                    or self.services.claims.stopping
                ):
                    break
                ran += self._run_one(broker, message, actor, limit, left.pop(0), bundle.hold)
        finally:
            try:
                if left:
                    self._give_back(broker, message, left, bundle)
            finally:
                recorder.observe("ferry_bundle_jobs", ran, message.actor_name)
                self.ran_after_first += ran - 1

    def _run_one(
        self,
        broker: dramatiq.Broker,
        message: Any,
        actor: dramatiq.Actor[Any, Any],
        limit: TimeLimit,
        job: ClaimedJob,
        hold: BundleHold,
    ) -> int:
        """Run a job of a bundle on this thread and record it: 1 if it ran (0: it was
        cancelled while it waited)."""
        try:
            if not self.services.claims.starting(job):
                log.debug("job %s is no longer RUNNING; skipping it", job.id)
                hold.release()
                return 0
            started = self._starting(job, message)
        except BaseException:
            hold.release()  # nothing will be recorded
            raise
        exception: BaseException | None = None
        try:
            # This job's own time limit, as Dramatiq sets one for each message.
            limit.before_process_message(broker, message)  # type: ignore[no-untyped-call]
            actor.fn(str(job.id))
        except BaseException as exc:  # as Dramatiq's worker catches a job's
            exception = exc
        try:
            limit.after_process_message(broker, message)  # type: ignore[no-untyped-call]
        except BaseException as exc:  # its limit, come as the job ended: recorded too
            exception = exception or exc
        take_current_job()
        self._finish(broker, message, job, started, hold, take_result(), exception)
        return 1

    def _give_back(
        self,
        broker: dramatiq.Broker,
        message: Any,
        jobs: list[ClaimedJob],
        bundle: _Bundle,
        *,
        first: bool = False,
    ) -> None:
        """Claimed jobs of a bundle that will not start here (with `first`: its first job
        too): PENDING again (their attempt not counted), and sent back for another thread;
        a claim not given back in time is left to its lease. Those the heartbeat gave
        back already are not given back twice."""
        assert isinstance(broker, GroupAckRedisBroker), "bundles come from the fair queue"
        waiting = self.services.claims.forget(jobs)
        kept = sum(job.id not in bundle.behind.taken for job in jobs) + first
        broker.bundled.sent_back(message, kept)  # not those the heartbeat counted
        try:
            if waiting or first:
                self._return(message, [bundle.first, *waiting] if first else waiting)
        finally:
            for _ in range(len(jobs) + first):
                bundle.hold.release()

    def _return_overdue(
        self, broker: GroupAckRedisBroker, message: Any, jobs: list[ClaimedJob]
    ) -> None:
        """Jobs that waited behind a slow one of their bundle: given back by the heartbeat
        (on a pool thread); their thread skips them, and lets their ack share go."""
        broker.bundled.sent_back(message, len(jobs))
        self._return(message, jobs)

    def _return(self, message: Any, jobs: list[ClaimedJob]) -> None:
        """Claimed jobs of a bundle that will not start: PENDING again and sent back."""
        statuses = self.services.writer.unclaim(jobs, GIVE_BACK_TIMEOUT_S)
        given = [job.id for job, status in zip(jobs, statuses, strict=True) if status]
        if len(given) < len(jobs):
            log.warning("gave back %d of %d jobs of a bundle; the others are left to their "
                        "leases", len(given), len(jobs))  # fmt: skip
        else:
            log.info("gave back %d jobs of a bundle", len(given))
        self._send_back(message, given)

    def _take_bundle(self) -> _Bundle | None:
        bundle, self._per_thread.bundle = getattr(self._per_thread, "bundle", None), None
        return bundle

    def _ended(
        self, broker: dramatiq.Broker, message: Any, exception: BaseException | None
    ) -> None:
        job = take_current_job()
        stored = take_result()  # the actor's `result` is None (ferry.worker.running)
        handed = take_handover()
        slot = self._take_slot()
        if job is not None and handed is not None and slot is not None and exception is None:
            # The thread moves on; the job's task records its outcome when it ends.
            hold = broker.hold_ack(message) if isinstance(broker, GroupAckRedisBroker) else None
            started = self._per_thread.started
            done = partial(self._finish, broker, message, job, started, hold)
            self.services.async_jobs.start(handed, slot, done)
            job_ids.set(None)
            return
        if slot is not None:
            slot.release()
        if job is not None:
            bundle = getattr(self._per_thread, "bundle", None)
            hold = None if bundle is None else bundle.hold
            self._finish(broker, message, job, self._per_thread.started, hold, stored, exception)

    def _finish(
        self,
        broker: dramatiq.Broker,
        message: Any,
        job: ClaimedJob,
        started: float,
        hold: Hold | None,
        stored: Any,
        exception: BaseException | None,
    ) -> None:
        """Record how the attempt ended: on the worker thread for a sync handler, on the
        job loop's thread pool for an async one (whose ack is held already)."""
        job_ids.set((str(job.id), job.tenant_id))  # on the log line of a failed attempt
        try:
            outcome = self._outcome(job, started, stored, exception)
        except BaseException:
            if not isinstance(hold, BundleHold):  # a bundle's goes with its last job
                self._release(message)  # nothing will be recorded: free the slot now
            if hold is not None:
                hold.release()
            raise
        finally:
            job_ids.set(None)
        if outcome.status is not JobStatus.PENDING and isinstance(broker, GroupAckRedisBroker):
            # The thread moves on to its next message; the ack waits for the commit.
            hold = hold or broker.hold_ack(message)
            self.services.writer.finish_then(outcome, partial(self._recorded, job, message, hold))
            return
        # A retry waits: its next attempt is sent only once this one is recorded, and
        # this one's message is acked only after that.
        recorded = self.services.writer.finish(outcome)
        if recorded is JobStatus.PENDING:
            try:
                # The next attempt keeps this message's priority (the job's).
                retry = Enqueued(
                    job.id,
                    job.type,
                    job.tenant_id,
                    outcome.retry_delay_ms,
                    priority=priority_of(message),
                )
                self.sender.send_now([retry])
            except Exception:
                log.exception("re-enqueue of job %s failed; recovery will re-send it", job.id)
        self._recorded(job, message, hold, recorded)

    def _outcome(
        self, job: ClaimedJob, started: float, result: Any, exception: BaseException | None
    ) -> Outcome:
        own = (job.retry_base_ms, job.retry_cap_ms)
        base_ms, cap_ms = backoff_ms(job.type, self.settings, own)
        outcome = decide(job, result, exception, retry_base_ms=base_ms, retry_cap_ms=cap_ms)
        took = time.monotonic() - started
        recorder.observe("ferry_job_duration_seconds", took, job.type)
        if not is_async(job.type):  # an async type goes one a message
            self.services.durations.add(job.type, took)
        if exception is not None:
            log.warning(
                "job %s (%s) attempt %d/%d: %s -> %s",
                job.id, job.type, job.attempts, job.max_attempts, outcome.error, outcome.status,
            )  # fmt: skip
        return outcome

    def _recorded(
        self, job: ClaimedJob, message: Any, hold: Hold | None, recorded: JobStatus | None
    ) -> None:
        """Once the outcome is written: count it, free the tenant's slot, let the ack go."""
        try:
            if recorded is None:
                log.info("job %s changed while it ran; its outcome was not recorded", job.id)
            elif recorded is JobStatus.PENDING:
                recorder.inc("ferry_job_retries", job.tenant_id, job.type)
            else:
                recorder.inc("ferry_jobs_finished", job.tenant_id, job.type, recorded)
            if not isinstance(hold, BundleHold):  # a bundle's goes with its last job
                self._release(message)
        finally:
            if hold is not None:
                hold.release()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        try:
            if (bundle := self._take_bundle()) is not None:  # not expected: given back
                self._give_back(broker, message, bundle.waiting, bundle, first=True)
            set_current_job(None)
            self._free_slot()
            self._release(message)
        finally:
            self.services.claims.free()

    def _take_slot(self) -> Slot | None:
        """This thread's async slot, if it reserved one, handed over to the caller."""
        slot, self._per_thread.slot = getattr(self._per_thread, "slot", None), None
        return slot

    def _free_slot(self) -> None:
        if (slot := self._take_slot()) is not None:
            slot.release()

    def _release(self, message: Any) -> None:
        """The message is done with: its tenant's slot (if capped) is free again."""
        tenant = tenant_of(message)
        if self.services.feeder is not None and tenant is not None:
            self.services.feeder.finished(tenant, message.options["redis_message_id"])
