"""The in-memory event log (`just dev`, or PostgreSQL without Redis): numbering, and the
marks that tell the recovery pass which committed changes were appended already."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from ferry.events.event import (
    JobEvent,
    ProgressEvent,
    events_in,
    progress_after,
    progress_event,
    seq_of,
)
from ferry.events.log import Committed, MemoryEventLog

TENANT = "t1"


def event(tenant: str, status: str) -> JobEvent:
    return JobEvent(tenant, uuid.uuid4(), status, 0, None, datetime.now(UTC))


def progress(tenant: str = TENANT) -> ProgressEvent:
    return progress_event(tenant, uuid.uuid4(), 0.5, None, datetime.now(UTC))


async def test_a_mark_appended_once_is_known_and_its_events_never_appended_twice() -> None:
    delivered: list[bytes] = []
    log = MemoryEventLog("ns", lambda channel, data: delivered.extend(events_in(data)), retain=10)
    mark, other = uuid.uuid4(), uuid.uuid4()
    change = Committed([event("t1", "PENDING"), event("t1", "RUNNING")], mark)

    await log.append([change])
    # The recovery pass asks before it relays an outbox row: appended, nothing to do.
    assert await log.appended([mark, other]) == [True, False]
    await log.append([change])  # relayed all the same (a race with the committer)
    assert len(delivered) == 2 and await log.current("t1") == 2


async def test_marks_are_forgotten_after_their_time() -> None:
    log = MemoryEventLog("ns", lambda channel, data: None, retain=10, mark_ttl_ms=0)
    mark = uuid.uuid4()
    await log.append([Committed([event("t1", "PENDING")], mark)])
    await log.append([Committed([event("t1", "RUNNING")], None)])  # forgets the expired
    assert await log.appended([mark]) == [False]


async def test_the_memory_log_numbers_progress_apart_and_keeps_none_of_it() -> None:
    delivered: list[bytes] = []
    log = MemoryEventLog("ns", lambda channel, data: delivered.extend(events_in(data)), retain=10)
    await log.append([Committed([progress()]), Committed([event(TENANT, "PENDING")] * 2)])
    await log.append(
        [
            Committed([progress(), progress("other"), progress()]),
            Committed([event(TENANT, "COMPLETED")]),
        ]
    )
    assert [(seq_of(data), progress_after(data)) for data in delivered] == [
        (1, 0),
        (1, None),
        (2, None),
        (2, 2),
        (3, 2),
        (3, None),
        (1, 0),  # the other tenant's, on its own channel
    ]
    # No hole in the JOB_UPDATEs' seq, and none of the progress in the history.
    assert await log.current(TENANT) == 3
    assert [seq_of(data) for data in await log.read(TENANT, 0, 10) or []] == [1, 2, 3]
