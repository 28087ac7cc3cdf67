"""The recovery pass: no job is lost, whatever happened to its message or worker.

Every `recovery_interval_ms` one worker process (a Redis lock elects it per
pass; several may run it safely) sees to:
- orphans: RUNNING jobs whose lease expired (their worker died) go back to
  PENDING and are re-sent, or become FAILED if that was their last attempt;
  the messages a dead worker had fetched go back to the queue (Dramatiq's
  maintenance, run on every pass);
- lost messages: PENDING jobs overdue by more than `recovery_grace_ms` whose
  message no queue holds (the enqueue failed, or Redis lost its data) are
  re-sent (a message waiting in its tenant's queue counts as held; a job whose
  tenant or type is paused waits with none, `ferry.db.pauses`);
- events: the outbox rows their committer left are relayed (`ferry.db.outbox`);
- tenants' limits: written from PostgreSQL to Redis again;
- retention: finished jobs past their retention are deleted, a small batch per
  transaction, for at most PRUNE_BUDGET_S per pass (`ferry.db.retention`).
A duplicate message is harmless: the claim lets exactly one of them run. Each
of these is done on its own: one that fails does not hold up the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import dramatiq
import msgspec
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Select, delete, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db import outbox, retention
from ferry.db.idempotency import KEY_TTL
from ferry.db.jobs import Enqueued
from ferry.db.models import IdempotencyKey, Job, JobStatus, utcnow
from ferry.db.outbox import Relay
from ferry.db.pauses import held
from ferry.events.event import JobEvent
from ferry.events.log import Committed, EventLog
from ferry.observability.metrics import recorder
from ferry.queue.fair.broker import fair_queue
from ferry.queue.fair.limits import all_limits, mirror
from ferry.queue.group_ack import GroupAckRedisBroker
from ferry.queue.messages import JOBS_QUEUE
from ferry.queue.sender import Sender
from ferry.settings import Settings

log = logging.getLogger(__name__)

LOST_WORKER = "worker lost: its lease expired while the job was RUNNING"
# Retention: the time a pass may spend deleting, and the pause between its batches
# (the other transactions' turn).
PRUNE_BUDGET_S = 2.0
PRUNE_BREATH_S = 0.01
# Where each retention rule's batches go on from is kept this long (then they start from
# the oldest again), and read from this much before.
PRUNE_PLACES_KEPT_S = 3600.0
PRUNE_PLACE_MARGIN = timedelta(minutes=5)
# The overdue jobs read at once, and the most read per pass.
SCAN_LIMIT = 10_000
WINDOWS_PER_PASS = 10


class _Message(msgspec.Struct):
    args: list[Any] = []
    options: dict[str, Any] = {}


_message = msgspec.json.Decoder(_Message)


def _job_ids_of(encoded: bytes) -> list[str]:
    """The job ids a queued message carries (a bundle's too); none for one that is not a
    job's (or is not even JSON: it must not stop the pass from reading the others).
    `ferry.queue.messages.job_ids_of` on the raw data: a pass reads every queued
    message, and decoding only these two fields is what keeps it cheap."""
    try:
        message = _message.decode(encoded)
    except msgspec.DecodeError:
        return []
    if not message.args:
        return []
    more = message.options.get("more")
    return [str(message.args[0]), *(map(str, more) if isinstance(more, list) else ())]


def unqueued(broker: dramatiq.Broker, job_ids: Iterable[str]) -> set[str]:
    """Those of `job_ids` that no queue holds a message for: ready, delayed or
    fetched but not acked.

    The queues are read a page at a time and only `job_ids` are kept: the memory
    stays flat however long the queues are. Messages flow from the delay queue
    through their tenant's queue into Dramatiq's queue; read upstream first, so a
    message that moves meanwhile is seen downstream.
    """
    left = set(job_ids)
    queues = (f"{JOBS_QUEUE}.DQ", JOBS_QUEUE)
    if isinstance(broker, RedisBroker):
        hashes = [f"{broker.namespace}:{queue}.msgs" for queue in queues]
        if (fair := fair_queue(broker)) is not None:
            hashes.insert(1, fair.messages_key)  # waiting for their tenant's turn
        encoded: Iterable[Any] = (
            value for key in hashes for _, value in broker.client.hscan_iter(key, count=1000)
        )
    elif isinstance(broker, StubBroker):
        encoded = [message for queue in queues for message in list(broker.queues[queue].queue)]
    else:
        raise TypeError(f"unsupported broker {type(broker).__name__}")
    for message in encoded:
        if not left:
            break
        left.difference_update(_job_ids_of(message))
    return left


class Recovery:
    def __init__(
        self,
        engine: Callable[[], AsyncEngine],
        broker: dramatiq.Broker,
        settings: Settings,
        events: EventLog | None = None,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.sender = Sender(broker)
        self.settings = settings
        self.events = events
        self.interval = settings.recovery_interval_ms / 1000
        self.resent = 0
        self.orphans = 0
        self.relayed = 0
        self.pruned = 0
        self._scan_from: tuple[datetime, uuid.UUID] | None = None  # resend_lost's window
        # prune_finished: where each rule's last batch ended, (status, tenant) -> finished at.
        self._prune_places: dict[tuple[str, str | None], datetime] = {}
        self._prune_places_since = time.monotonic()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                if await self._elected():
                    await self.recover()
            except Exception:
                log.exception("recovery pass failed; the next one will try again")

    async def _elected(self) -> bool:
        """One process per interval does the pass (any process would be safe, just wasteful)."""
        if not isinstance(self.broker, RedisBroker):
            return True
        key = f"{self.broker.namespace}:recovery-lock"
        ttl_ms = max(int(self.interval * 900), 100)
        return bool(await asyncio.to_thread(self.broker.client.set, key, "1", nx=True, px=ttl_ms))

    async def recover(self) -> None:
        steps = (
            self.mirror_tenant_limits,
            # Before the orphans: a dead worker's last events are still its jobs' latest.
            self.relay_events,
            self.requeue_orphans,
            self.requeue_dead_workers_messages,
            self.resend_lost,
            self.forget_old_idempotency_keys,
            self.prune_finished,  # last: it may take the rest of its budget
        )
        for step in steps:
            try:
                await step()
            except Exception:
                log.exception("recovery: %s failed; the next pass tries again", step.__name__)

    async def prune_finished(self) -> None:
        """Delete the finished jobs past their retention, oldest first, in short
        transactions with a breath between them, a batch of each rule in turn (so that no
        rule waits for another's backlog), until none is left or the budget of the pass
        is spent (the next pass goes on)."""
        deadline = time.monotonic() + PRUNE_BUDGET_S
        if time.monotonic() - self._prune_places_since > PRUNE_PLACES_KEPT_S:
            # From the start again, now and then: what was skipped (rows locked at the
            # time, a tenant whose own retention was lifted) is taken then.
            self._prune_places.clear()
            self._prune_places_since = time.monotonic()
        async with self.engine().connect() as conn:
            rules = await retention.rules(conn, self.settings.retention_ms, utcnow())
        places = self._prune_places
        while rules and time.monotonic() < deadline:
            for rule in list(rules):
                # Each rule goes on where its last batch ended (the cutoffs only move on),
                # or a little before: a job may be written finished a while after its
                # finish time (a writer waiting out a lost connection, another clock).
                # The rows left before it are not read again, batch after batch.
                key = (rule.status, rule.tenant_id)
                after = places[key] - PRUNE_PLACE_MARGIN if key in places else None
                async with self.engine().begin() as conn:
                    deleted, last = await retention.prune(conn, rule, after=after)
                self.pruned += deleted
                if deleted < retention.BATCH:
                    places[key] = rule.cutoff  # all before it read: the next pass goes on
                    rules.remove(rule)  # done for this pass
                elif last is not None:
                    places[key] = last
                await asyncio.sleep(PRUNE_BREATH_S)
                if time.monotonic() >= deadline:
                    break

    async def requeue_dead_workers_messages(self) -> None:
        if isinstance(self.broker, GroupAckRedisBroker):
            await asyncio.to_thread(self.broker.maintain)

    async def relay_events(self) -> None:
        """Events of committed changes whose committer did not append them."""
        if self.events is not None:
            relay = Relay(self.engine(), self.events, self.settings.recovery_grace_ms)
            self.relayed += await relay.relay()

    async def mirror_tenant_limits(self) -> None:
        """Tenants' limits, from PostgreSQL to Redis again (after a Redis loss, say)."""
        if (fair := fair_queue(self.broker)) is not None:
            async with self.engine().connect() as conn:
                limits = await all_limits(conn)
            await asyncio.to_thread(mirror, fair, limits)

    async def forget_old_idempotency_keys(self) -> None:
        cutoff = utcnow() - KEY_TTL
        async with self.engine().begin() as conn:
            await conn.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff))

    async def requeue_orphans(self) -> None:
        now = utcnow()
        stale = (
            Job.status == JobStatus.RUNNING,
            Job.heartbeat_at < now - timedelta(milliseconds=self.settings.lease_ms),
        )
        lost = {"error": LOST_WORKER, "heartbeat_at": None, "updated_at": now}
        async with self.engine().begin() as conn:
            failed = await conn.execute(
                update(Job)
                .where(*stale, Job.attempts >= Job.max_attempts)
                .values(status=JobStatus.FAILED, finished_at=now, **lost)
                .returning(Job.id, Job.tenant_id, Job.attempts, Job.type, Job.priority)
            )
            failed_rows = failed.all()
            pending = await conn.execute(
                update(Job)
                .where(*stale)
                .values(status=JobStatus.PENDING, next_run_at=now, **lost)
                .returning(Job.id, Job.tenant_id, Job.attempts, Job.type, Job.priority)
            )
            pending_rows = pending.all()
            mark = await outbox.add(conn, (row.id for row in (*failed_rows, *pending_rows)), now)
        if not failed_rows and not pending_rows:
            return
        self.orphans += len(failed_rows) + len(pending_rows)
        for row in failed_rows:
            recorder.inc("ferry_jobs_finished", row.tenant_id, row.type, JobStatus.FAILED)
        log.warning(
            "recovered %d orphaned job(s) from dead workers", len(failed_rows) + len(pending_rows)
        )
        events = [
            JobEvent(row.tenant_id, row.id, status, row.attempts, LOST_WORKER, now)
            for status, rows in ((JobStatus.FAILED, failed_rows), (JobStatus.PENDING, pending_rows))
            for row in rows
        ]
        # Events first: the re-sent job's RUNNING must not overtake its PENDING.
        jobs = [Enqueued.of(row) for row in pending_rows]
        await self.sender.announce(self.events, Committed(events, mark), jobs)

    async def resend_lost(self) -> None:
        cutoff = utcnow() - timedelta(milliseconds=self.settings.recovery_grace_ms)
        overdue: list[uuid.UUID] = []
        async with self.engine().connect() as conn:
            for _ in range(WINDOWS_PER_PASS):
                # No more than SCAN_LIMIT in all: the next pass reads on after the last.
                size = SCAN_LIMIT - len(overdue)
                rows = (await conn.execute(_overdue(cutoff, self._scan_from, size))).all()
                # Held jobs (their tenant or type is paused) wait with no message on purpose.
                overdue += [row.id for row in rows if not row.held]
                # The next window reads on from its last job; one that reads to the end
                # starts over.
                last = rows[-1] if rows and rows[-1].n == size else None
                self._scan_from = None if last is None else (last.next_run_at, last.id)
                if len(overdue) >= SCAN_LIMIT or last is None:
                    break
        if not overdue:
            return
        lost = await asyncio.to_thread(unqueued, self.broker, map(str, overdue))
        if not lost:
            return
        # Read again after the scan: a job claimed (and its message acked) while
        # the queues were scanned is no longer PENDING, and needs nothing.
        ids = [job_id for job_id in overdue if str(job_id) in lost]
        async with self.engine().connect() as conn:
            columns = (Job.id, Job.type, Job.tenant_id, Job.priority)
            rows = await conn.execute(_pending(Job.id.in_(ids), *columns))
            missing = [Enqueued.of(row) for row in rows]
        if missing:
            log.warning("re-sending %d PENDING job(s) that no queue holds", len(missing))
            await self._send(missing)
            self.resent += len(missing)

    async def _send(self, jobs: list[Enqueued]) -> None:
        if jobs:
            await asyncio.to_thread(self.sender.send_now, jobs)


def _overdue(cutoff: datetime, after: tuple[datetime, uuid.UUID] | None, size: int) -> Select[Any]:
    """A window: the next `size` PENDING jobs due before `cutoff`, longest due first,
    from after `after` (a due time and id) on; of them, those no pause holds, and the
    last (its place `n` is `size` when the window is full). A pass reads a few windows,
    not the jobs up to SCAN_LIMIT it wants: a paused tenant's backlog of a million held
    jobs at the front would otherwise be read past on every pass."""
    condition = [Job.status == JobStatus.PENDING, Job.next_run_at < cutoff]
    if after is not None:  # ix_jobs_status_due: (status, next_run_at, id)
        condition += [Job.next_run_at >= after[0], tuple_(Job.next_run_at, Job.id) > after]
    window = (
        select(Job.id, Job.next_run_at, Job.tenant_id, Job.type)
        .where(*condition)
        .order_by(Job.next_run_at, Job.id)
        .limit(size)
        .subquery()
    )
    place = func.row_number().over(order_by=(window.c.next_run_at, window.c.id))
    numbered = select(
        window.c.id,
        window.c.next_run_at,
        held(window.c.tenant_id, window.c.type).label("held"),
        place.label("n"),
    ).subquery()
    return (
        select(numbered).where(or_(~numbered.c.held, numbered.c.n == size)).order_by(numbered.c.n)
    )


def _pending(condition: Any, *columns: Any) -> Select[Any]:
    """`columns` of the PENDING jobs that meet `condition`, longest due first, at most
    SCAN_LIMIT."""
    return (
        select(*columns)
        .where(Job.status == JobStatus.PENDING, condition)
        .order_by(Job.next_run_at)
        .limit(SCAN_LIMIT)
    )
