"""The feed's ordering rules, on the in-memory event log (the embedded default's)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec

from ferry.db.models import utcnow
from ferry.events.event import (
    RECONNECTED,
    JobEvent,
    ProgressEvent,
    encode,
    events_in,
    events_lost,
    progress_after,
    progress_event,
    says_lost,
    seq_of,
    with_progress_seq,
    with_seq,
)
from ferry.events.feed import READ_CHUNK, FeedItem, Resync, follow
from ferry.events.log import Committed, MemoryEventLog

TENANT = "tenant-a"


def event(tenant: str = TENANT, status: str = "PENDING") -> JobEvent:
    return JobEvent(tenant, uuid.uuid4(), status, 0, None, utcnow())


async def filled(count: int, *, retain: int = 100_000) -> tuple[MemoryEventLog, list[bytes]]:
    delivered: list[bytes] = []
    log = MemoryEventLog(
        "ns", lambda channel, data: delivered.extend(events_in(data)), retain=retain
    )
    await log.append([Committed([event() for _ in range(count)])])
    return log, delivered


async def live(
    items: list[bytes], start: int = 0, first: Callable[[], Awaitable[object]] | None = None
) -> AsyncIterator[bytes]:
    """A channel subscription: yields `items` from `start`, as they grow; `first`
    runs when the feed starts listening (after it has read its starting point)."""
    if first is not None:
        await first()
    while start < len(items):
        yield items[start]
        start += 1


async def collect(items: AsyncIterator[FeedItem]) -> list[int | Resync]:
    return [item if isinstance(item, Resync) else seq_of(item) for item in [i async for i in items]]


def test_seq_goes_first_and_reads_back() -> None:
    data = with_seq(encode(event()), 1234)
    assert data.startswith(b'{"seq":1234,')
    assert seq_of(data) == 1234
    assert msgspec.json.decode(data)["seq"] == 1234


async def test_the_memory_log_numbers_per_tenant_and_delivers_each_tenants_events_together() -> (
    None
):
    delivered: list[tuple[str, list[int]]] = []

    def deliver(channel: str, data: bytes) -> None:
        delivered.append((channel, [seq_of(event) for event in events_in(data)]))

    log = MemoryEventLog("ns", deliver, retain=10)
    await log.append([Committed([event("a"), event("b")]), Committed([event("a")])])
    assert delivered == [("ns:events:live:a", [1, 2]), ("ns:events:live:b", [1])]
    assert (await log.current("a"), await log.current("b"), await log.current("c")) == (2, 1, 0)


async def test_without_a_resume_point_only_later_events_are_sent() -> None:
    log, delivered = await filled(5)
    more = log.append([Committed([event(), event()])])
    # 4 and 5 were published between the subscription and the reading of seq 5.
    assert await collect(follow(log, TENANT, live(delivered, 3, lambda: more), None)) == [6, 7]


async def test_a_resume_replays_what_came_after_and_sends_live_copies_once() -> None:
    log, delivered = await filled(8)
    # Events 5..8 were also published while the feed read back from 2.
    items = await collect(follow(log, TENANT, live(delivered[4:]), 2))
    assert items == [3, 4, 5, 6, 7, 8]


async def test_a_long_replay_is_read_in_chunks() -> None:
    log, _ = await filled(READ_CHUNK * 2 + 7)
    items = await collect(follow(log, TENANT, live([]), 0))
    assert items == list(range(1, READ_CHUNK * 2 + 8))


async def picked(
    log: MemoryEventLog, delivered: list[bytes], more: int, seqs: list[int]
) -> AsyncIterator[bytes]:
    """A subscription whose backlog kept only `seqs` of the `more` events published next."""
    await log.append([Committed([event() for _ in range(more)])])
    for seq in seqs:
        yield delivered[seq - 1]


async def test_events_dropped_from_a_full_backlog_are_read_back() -> None:
    log, delivered = await filled(3)
    backlog = picked(log, delivered, 6, [4, 7, 9])  # 5, 6 and 8 dropped
    assert await collect(follow(log, TENANT, backlog, 3)) == [4, 5, 6, 7, 8, 9]


async def test_a_resume_older_than_the_history_gets_a_resync() -> None:
    log, delivered = await filled(10, retain=3)
    items = await collect(follow(log, TENANT, live(delivered[8:]), 2))
    assert items == [Resync(TENANT, 10)]
    log, delivered = await filled(10, retain=3)
    assert await collect(follow(log, TENANT, live([]), 50)) == [Resync(TENANT, 10)]


async def test_a_gap_older_than_the_history_gets_a_resync_then_goes_on() -> None:
    log, delivered = await filled(10, retain=3)
    backlog = picked(log, delivered, 10, [11, 19, 20])  # 12..18 dropped, 18..20 kept
    items = await collect(follow(log, TENANT, backlog, 10))
    assert items == [11, Resync(TENANT, 18), 19, 20]


async def test_a_counter_that_starts_again_is_a_resync() -> None:
    log, _ = await filled(4)
    again = [with_seq(encode(event()), seq) for seq in (5, 6, 1, 2)]  # Redis lost its data
    items = await collect(follow(log, TENANT, live(again), None))
    assert items == [5, 6, Resync(TENANT, 0), 1, 2]


async def test_after_a_reconnect_the_feed_reads_what_it_missed() -> None:
    log, delivered = await filled(2)
    missed = log.append([Committed([event(), event()])])  # 3, 4: published while disconnected

    async def reconnected() -> AsyncIterator[bytes]:
        await missed
        yield RECONNECTED
        await log.append([Committed([event()])])
        yield delivered[4]

    assert await collect(follow(log, TENANT, reconnected(), 2)) == [3, 4, 5]


async def test_after_a_reconnect_to_an_emptied_redis_the_feed_resyncs() -> None:
    emptied, fresh = await filled(0)  # the counter started over

    async def reconnected() -> AsyncIterator[bytes]:
        yield RECONNECTED
        await emptied.append([Committed([event()])])
        yield fresh[0]

    assert await collect(follow(emptied, TENANT, reconnected(), 5)) == [Resync(TENANT, 0), 1]


# -- progress events ---------------------------------------------------------------------


def progress(tenant: str = TENANT, fraction: float = 0.5) -> ProgressEvent:
    return progress_event(tenant, uuid.uuid4(), fraction, "working", utcnow())


async def described(items: AsyncIterator[FeedItem]) -> list[int | str | Resync]:
    """JOB_UPDATEs as their seq, PROGRESS events as `P<seq>/<after>`."""
    found: list[int | str | Resync] = []
    async for item in items:
        if isinstance(item, Resync):
            found.append(item)
        elif (after := progress_after(item)) is not None:
            found.append(f"P{seq_of(item)}/{after}")
        else:
            found.append(seq_of(item))
    return found


def test_a_progress_event_goes_out_with_its_own_seq_and_the_update_seq_it_follows() -> None:
    job = uuid.uuid4()
    at = utcnow()
    data = with_progress_seq(encode(progress_event(TENANT, job, 0.25, "rows", at)), 7, 41)
    assert data.startswith(b'{"seq":7,"type":"PROGRESS","after":41,')
    assert (seq_of(data), progress_after(data), says_lost(data)) == (7, 41, False)
    assert msgspec.json.decode(data) == {
        "seq": 7, "type": "PROGRESS", "after": 41, "tenantId": TENANT, "jobId": str(job),
        "progress": 0.25, "message": "rows", "at": at.isoformat().replace("+00:00", "Z"),
    }  # fmt: skip
    assert progress_after(with_seq(encode(event()), 3)) is None
    assert progress_after(with_seq(encode(events_lost(TENANT)), 4)) is None


async def test_progress_events_pass_in_order_and_make_no_gap() -> None:
    delivered: list[bytes] = []
    log = MemoryEventLog("ns", lambda channel, data: delivered.extend(events_in(data)), retain=100)
    parts: list[list[JobEvent | ProgressEvent]] = [
        [event()], [progress(), progress()], [event()], [progress()], [event()],
    ]  # fmt: skip
    publish = log.append([Committed(part) for part in parts])
    items = await described(follow(log, TENANT, live(delivered, 0, lambda: publish), None))
    assert items == [1, "P1/1", "P2/1", 2, "P3/2", 3]


async def test_a_progress_event_older_than_what_a_replay_sent_is_left_out() -> None:
    """A resume reads back JOB_UPDATEs that are in the live backlog too: a PROGRESS
    published before the last of them (its job's end, maybe) must not follow it."""
    log, delivered = await filled(3)
    await log.append([Committed([progress()]), Committed([event()])])  # P after 3, then 4
    backlog = delivered[3:]  # published after the subscription: P1/3, 4
    items = await described(follow(log, TENANT, live(backlog), 2))
    assert items == [3, 4]  # 4 was read back before P1 came live: P1 is left out


async def test_a_progress_event_after_missed_updates_waits_for_them_to_be_read_back() -> None:
    log, delivered = await filled(3)

    async def publish() -> None:
        await log.append([Committed([event(), event()]), Committed([progress()])])
        await log.append([Committed([event()])])

    # 4 and 5 are dropped from the backlog; P1 (after 5) and 6 are kept.
    items = await described(follow(log, TENANT, live(delivered, 5, publish), 3))
    assert items == [4, 5, "P1/5", 6]
