"""The per-tenant queues' script (`fair.lua`) on a real Redis: round robin, weights, caps, rate."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import dramatiq
import pytest
import redis
import redis.asyncio as aioredis

from ferry.queue.fair.limits import TenantLimits, redis_fields
from ferry.queue.fair.queue import FairQueue
from ferry.queue.messages import JOBS_QUEUE, Outgoing, job_ids_of, job_message, outgoing_of
from tests.support.services import TEST_REDIS_URL, redis_namespace

DEPTH = 4


@pytest.fixture
def fair() -> Iterator[FairQueue]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    with redis_namespace() as namespace:
        queue = FairQueue(client, namespace, JOBS_QUEUE, DEPTH)
        queue.clock = lambda: 1_000_000
        yield queue
    client.close()


def push(fair: FairQueue, tenant: str, count: int, priority: int = 5, tag: str = "") -> list[str]:
    messages = [
        job_message(f"{tenant}-{i}", "sleep", tenant, priority).copy(
            options={"redis_message_id": f"{tenant}-{tag}m{i}"}
        )
        for i in range(count)
    ]
    fair.push([outgoing_of(message) for message in messages])
    return [m.options["redis_message_id"] for m in messages]


def take_all(fair: FairQueue) -> list[str]:
    """Empty Dramatiq's queue (as workers would), returning its message ids in order."""
    key = f"{fair.namespace}:{JOBS_QUEUE}"
    ids = [
        raw.decode() if isinstance(raw, bytes) else raw for raw in fair.client.lrange(key, 0, -1)
    ]
    fair.client.delete(key, f"{key}.msgs")
    return ids


def drain(fair: FairQueue, rounds: int = 100) -> list[str]:
    order = take_all(fair)
    for _ in range(rounds):
        fair.refill()
        batch = take_all(fair)
        if not batch:
            break
        order += batch
    return order


def set_limits(fair: FairQueue, tenant: str, **limits: object) -> None:
    fair.set_limits([(tenant, redis_fields(TenantLimits(**limits)))])  # type: ignore[arg-type]


def test_a_push_fills_the_queue_up_to_its_depth_and_keeps_the_rest_per_tenant(
    fair: FairQueue,
) -> None:
    push(fair, "a", 10)
    queue = f"{fair.namespace}:{JOBS_QUEUE}"
    assert fair.client.llen(queue) == DEPTH
    assert fair.client.hlen(f"{queue}.msgs") == DEPTH  # Dramatiq's own layout
    assert [(q.tenant_id, q.waiting) for q in fair.peek()] == [("a", 10 - DEPTH)]
    assert fair.client.hlen(fair.messages_key) == 10 - DEPTH


def test_tenants_with_backlogs_are_served_in_turn(fair: FairQueue) -> None:
    push(fair, "a", 40)  # a floods first...
    push(fair, "b", 3)
    push(fair, "c", 3)
    order = drain(fair)
    assert sorted(order) == sorted([f"a-m{i}" for i in range(40)] + ["b-m0", "b-m1", "b-m2"]
                                   + ["c-m0", "c-m1", "c-m2"])  # fmt: skip
    # ...but b and c are done within the first DEPTH + 3 rounds of three, not after a's 40.
    last_quiet = max(order.index(f"{t}-m2") for t in "bc")
    assert last_quiet < DEPTH + 9
    assert fair.peek() == []


def test_weights_share_the_turns(fair: FairQueue) -> None:
    set_limits(fair, "heavy", weight=3)
    take_all(fair)
    push(fair, "heavy", 300)
    push(fair, "light", 300)
    order = drain(fair, rounds=1000)
    window = Counter(message.split("-")[0] for message in order[DEPTH : DEPTH + 200])
    assert window["heavy"] == 150 and window["light"] == 50


def test_a_running_cap_holds_jobs_back_until_slots_are_released(fair: FairQueue) -> None:
    set_limits(fair, "capped", max_running=2)
    push(fair, "capped", 5)
    push(fair, "free", 5)
    first = take_all(fair) + drain(fair)
    capped = [m for m in first if m.startswith("capped")]
    assert capped == ["capped-m0", "capped-m1"]
    assert len([m for m in first if m.startswith("free")]) == 5
    fair.refill(released=[("capped", "capped-m0")])
    assert take_all(fair) == ["capped-m2"]
    fair.refill()
    assert take_all(fair) == []


def test_a_slot_outlives_a_dead_worker_by_one_lease_only(fair: FairQueue) -> None:
    set_limits(fair, "capped", max_running=1)
    push(fair, "capped", 2)
    assert take_all(fair) == ["capped-m0"]
    fair.refill(renewed=[("capped", "capped-m0")], lease_ms=1_000)  # it started
    fair.clock = lambda: 1_000_999
    fair.refill()
    assert take_all(fair) == []
    fair.clock = lambda: 1_001_001  # no renewal since: its worker is gone
    fair.refill()
    assert take_all(fair) == ["capped-m1"]


def test_a_rate_limit_lets_jobs_through_as_its_tokens_come_back(fair: FairQueue) -> None:
    set_limits(fair, "slow", rate_per_second=10, burst=2)
    push(fair, "slow", 6)
    assert take_all(fair) == ["slow-m0", "slow-m1"]  # the burst
    fair.refill()
    assert take_all(fair) == []
    fair.clock = lambda: 1_000_250  # 2.5 tokens later, but a bucket holds 2 at most
    fair.refill()
    assert take_all(fair) == ["slow-m2", "slow-m3"]
    fair.clock = lambda: 1_000_300
    fair.refill()
    assert take_all(fair) == []  # half a token
    fair.clock = lambda: 1_000_350
    fair.refill()
    assert take_all(fair) == ["slow-m4"]


def test_a_message_whose_data_is_gone_is_skipped(fair: FairQueue) -> None:
    fair.clock = lambda: 1_000_000
    fair.client.rpush(f"{fair.namespace}:{JOBS_QUEUE}", *[f"x{i}" for i in range(DEPTH)])
    push(fair, "a", 2)
    fair.client.hdel(fair.messages_key, "a-m0")
    take_all(fair)
    fair.refill()
    assert take_all(fair) == ["a-m1"]
    assert fair.peek() == []


def test_peek_reports_each_waiting_tenant_and_its_oldest_job(fair: FairQueue) -> None:
    fair.client.rpush(f"{fair.namespace}:{JOBS_QUEUE}", *[f"x{i}" for i in range(DEPTH)])
    push(fair, "a", 3)
    push(fair, "b", 1)
    data = fair.client.hget(fair.messages_key, "a-m0")
    assert data is not None
    sent = json.loads(data)["message_timestamp"]
    fair.clock = lambda: sent + 1500
    queues = {q.tenant_id: q for q in fair.peek()}
    assert {t: q.waiting for t, q in queues.items()} == {"a": 3, "b": 1}
    assert queues["a"].wait_ms == 1500
    assert [q.waiting for q in fair.peek(["b", "nobody"])] == [1, 0]


async def test_a_refill_through_an_asyncio_client_moves_the_same(fair: FairQueue) -> None:
    """The feeder refills from the worker's event loop (no thread hop)."""
    push(fair, "a", 10)
    first = take_all(fair)
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    try:
        refilled = await fair.refill_on(client)
    finally:
        await client.aclose()
    assert (refilled.moved, refilled.tenants_waiting) == (DEPTH, 1)
    assert take_all(fair) == [f"a-m{i}" for i in range(DEPTH, 2 * DEPTH)]
    assert first == [f"a-m{i}" for i in range(DEPTH)]


def test_within_a_tenants_turn_higher_priorities_go_first(fair: FairQueue) -> None:
    first = push(fair, "a", DEPTH)  # fill Dramatiq's queue: the rest wait
    low = push(fair, "a", 3, priority=1, tag="low")
    default = push(fair, "a", 2, tag="default")
    high = push(fair, "a", 2, priority=9, tag="high")
    assert [(q.tenant_id, q.waiting) for q in fair.peek()] == [("a", 7)]
    # Each priority in the order its jobs came; the highest first.
    assert drain(fair) == first + high + default + low
    assert fair.peek() == []
    assert fair.client.exists(f"{fair.namespace}:fair:prio:a") == 0  # nothing left behind


def test_priorities_do_not_buy_a_tenant_more_turns(fair: FairQueue) -> None:
    filler = push(fair, "filler", DEPTH)  # Dramatiq's queue full: both tenants wait
    urgent = push(fair, "a", 8, priority=9)
    modest = push(fair, "b", 8, priority=0)
    order = drain(fair)
    # Turn by turn (weight 1: one job each), whatever their priorities.
    assert order == filler + [job for pair in zip(urgent, modest, strict=True) for job in pair]


def test_tenant_ids_with_colons_and_digits_keep_their_queues_apart(fair: FairQueue) -> None:
    push(fair, "filler", DEPTH)  # Dramatiq's queue full: the rest wait in the tenants' queues
    push(fair, "acme", 2, priority=7, tag="p7")
    push(fair, "acme:7", 3, tag="plain")
    waiting = {queue.tenant_id: queue.waiting for queue in fair.peek()}
    assert (waiting["acme"], waiting["acme:7"]) == (2, 3)


def test_a_tenant_left_out_of_the_ring_with_jobs_waiting_is_put_back_by_a_push(
    fair: FairQueue,
) -> None:
    push(fair, "filler", DEPTH)
    high = push(fair, "a", 2, priority=9, tag="high")
    # What a worker of the release before priorities did: it saw `q:a` empty and let a go.
    fair.client.lrem(f"{fair.namespace}:fair:ring", 0, "a")
    more = push(fair, "a", 1, tag="more")
    order = drain(fair)
    assert set(high + more) <= set(order)  # none left waiting for ever
    assert fair.client.lrange(f"{fair.namespace}:fair:ring", 0, -1) == []


def test_runs_longer_than_one_command_takes_keep_their_order(fair: FairQueue) -> None:
    """A push of interleaved tenants and priorities, runs longer than the script puts in
    one command, and a refill deeper than one command moves: every job, in order."""
    deep = FairQueue(fair.client, fair.namespace, JOBS_QUEUE, 1200)
    deep.clock = fair.clock

    def messages(tenant: str, count: int, priority: int, tag: str) -> list[Outgoing]:
        return [
            outgoing_of(
                job_message(f"{tenant}-{tag}{i}", "sleep", tenant, priority).copy(
                    options={"redis_message_id": f"{tenant}-{tag}{i}"}
                )
            )
            for i in range(count)
        ]

    default, quiet = messages("a", 700, 5, "d"), messages("b", 10, 5, "q")
    urgent = messages("a", 600, 9, "u")
    deep.push([*default, *quiet, *urgent])
    order = drain(deep)
    ids = [[m.redis_message_id for m in run] for run in (default, quiet, urgent)]
    # a and b take turns while both wait; then a, alone, fills the room: its urgent
    # jobs first, each priority in the order it came.
    taking_turns = [job for pair in zip(ids[2][:10], ids[1], strict=True) for job in pair]
    assert order == taking_turns + ids[2][10:] + ids[0]
    assert deep.peek() == []


# -- bundles: a turn's run of one job type into an empty queue as one message -------------


def queued(fair: FairQueue) -> list[dict[str, object]]:
    """The messages in Dramatiq's queue, decoded, in order (left in place)."""
    key = f"{fair.namespace}:{JOBS_QUEUE}"
    ids = fair.client.lrange(key, 0, -1)
    return [json.loads(fair.client.hget(f"{key}.msgs", i)) for i in ids]  # type: ignore[arg-type]


def jobs_of(message: dict[str, object]) -> list[str]:
    options = message["options"]
    assert isinstance(options, dict) and isinstance(message["args"], list)
    return [message["args"][0], *options.get("more", [])]


@pytest.fixture
def bundling(fair: FairQueue) -> FairQueue:
    fair.bundle = 3
    fair.refill(lease_ms=60_000, short=["sleep", "other"])  # as a worker's feeder tells it
    return fair


def test_a_type_no_worker_measured_short_goes_one_job_a_message(bundling: FairQueue) -> None:
    messages = [
        job_message(f"a-{i}", "email", "a").copy(options={"redis_message_id": f"e{i}"})
        for i in range(3)
    ]
    bundling.push([outgoing_of(message) for message in messages])
    assert [jobs_of(m) for m in queued(bundling)] == [["a-0"], ["a-1"], ["a-2"]]
    bundling.client.delete(f"{bundling.namespace}:fair:short:sleep")  # its lease ran out
    take_all(bundling)
    push(bundling, "a", 2)
    assert [jobs_of(m) for m in queued(bundling)] == [["a-0"], ["a-1"]]


def test_a_turn_into_an_empty_queue_goes_as_messages_of_up_to_bundle_jobs(
    bundling: FairQueue,
) -> None:
    ids = push(bundling, "a", 10)
    messages = queued(bundling)
    # DEPTH jobs moved (room counts jobs), as 3 + 1, each bundle keeping its first's id.
    assert [jobs_of(m) for m in messages] == [["a-0", "a-1", "a-2"], ["a-3"]]
    assert [m["options"]["redis_message_id"] for m in messages] == [ids[0], ids[3]]  # type: ignore[index]
    assert "more" not in messages[1]["options"]  # type: ignore[operator]
    assert [(q.tenant_id, q.waiting) for q in bundling.peek()] == [("a", 10 - DEPTH)]


def test_no_bundles_into_a_queue_that_holds_messages(bundling: FairQueue) -> None:
    push(bundling, "a", 1)
    push(bundling, "a", 3)  # 1 waits in Dramatiq's queue: moved one a message
    assert [jobs_of(m) for m in queued(bundling)] == [["a-0"], ["a-0"], ["a-1"], ["a-2"]]


def test_a_bundle_is_of_one_job_type_and_priority(bundling: FairQueue) -> None:
    bundling.depth = 10
    sent = [
        job_message(job_id, job_type, "a", priority).copy(options={"redis_message_id": job_id})
        for job_id, job_type, priority in [
            ("s-0", "sleep", 5), ("s-1", "sleep", 5), ("o-0", "other", 5),
            ("s-2", "sleep", 5), ("h-0", "sleep", 7), ("h-1", "sleep", 7),
        ]
    ]  # fmt: skip
    bundling.push([outgoing_of(message) for message in sent])
    # The higher priority's first (its own list), then the default's runs in order.
    assert [jobs_of(m) for m in queued(bundling)] == [
        ["h-0", "h-1"],
        ["s-0", "s-1"],
        ["o-0"],
        ["s-2"],
    ]


def test_a_capped_tenant_gets_no_bundles(bundling: FairQueue) -> None:
    set_limits(bundling, "a", max_running=10)
    push(bundling, "a", 6)
    assert [jobs_of(m) for m in queued(bundling)] == [["a-0"], ["a-1"], ["a-2"], ["a-3"]]


def test_bundle_1_moves_one_job_a_message(fair: FairQueue) -> None:
    push(fair, "a", 6)
    assert [jobs_of(m) for m in queued(fair)] == [["a-0"], ["a-1"], ["a-2"], ["a-3"]]


def test_a_bundled_message_decodes_as_dramatiqs(bundling: FairQueue) -> None:
    push(bundling, "a", 3)
    raw = bundling.client.hget(
        f"{bundling.namespace}:{JOBS_QUEUE}.msgs",
        bundling.client.lindex(f"{bundling.namespace}:{JOBS_QUEUE}", 0),  # type: ignore[arg-type]
    )
    message = dramatiq.Message.decode(raw)  # type: ignore[arg-type]
    assert message.actor_name == "sleep" and list(message.args) == ["a-0"]
    assert job_ids_of(message) == ["a-0", "a-1", "a-2"]
    assert message.options["tenant"] == "a" and message.kwargs == {}


def test_a_message_that_is_not_a_jobs_goes_as_it_came_and_breaks_no_bundle(
    bundling: FairQueue,
) -> None:
    good = [job_message(f"a-{i}", "sleep", "a").copy(options={"redis_message_id": f"g{i}"})
            for i in range(2)]  # fmt: skip
    odd = [
        Outgoing("a", "x1", 5, b"not json"),
        Outgoing("a", "x2", 5, b'{"args": [], "options": null}'),
    ]
    bundling.push([outgoing_of(good[0]), *odd, outgoing_of(good[1])])
    key = f"{bundling.namespace}:{JOBS_QUEUE}"
    ids = [raw.decode() for raw in bundling.client.lrange(key, 0, -1)]  # type: ignore[union-attr]
    assert ids == ["g0", "x1", "x2", "g1"]
    assert bundling.client.hget(f"{key}.msgs", "x1") == b"not json"


def test_the_room_counts_each_job_of_a_bundle_until_a_worker_fetches_it(
    bundling: FairQueue,
) -> None:
    push(bundling, "a", 10)  # 3 + 1 jobs fill the DEPTH of 4
    key = f"{bundling.namespace}:{JOBS_QUEUE}"
    bundling.refill()
    assert [jobs_of(m) for m in queued(bundling)] == [["a-0", "a-1", "a-2"], ["a-3"]]
    bundling.client.lpop(key)  # a worker fetches the bundle: room for 3 more jobs
    bundling.refill()
    assert [jobs_of(m) for m in queued(bundling)] == [["a-3"], ["a-4"], ["a-5"], ["a-6"]]
    take_all(bundling)
    bundling.refill()  # an empty queue again: bundles again
    assert [jobs_of(m) for m in queued(bundling)] == [["a-7", "a-8", "a-9"]]
