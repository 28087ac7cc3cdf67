"""Comparing the API's job types with what the live workers published: each kind of
disagreement, named with its type and its workers, and said once however many workers
show it. No servers (the Redis side runs in tests/integration/jobs/test_type_agreement.py)."""

from __future__ import annotations

import msgspec

from ferry.jobs.agreement import (
    NO_WORKER,
    Disagreement,
    Published,
    disagreements,
    summary,
    ttl_ms,
)
from ferry.jobs.registry import TypeDigest


def digest(tag: str = "a", **parts: object) -> TypeDigest:
    values: dict[str, object] = {
        "payload_schema": "s" * 16,
        "time_limit_ms": 60_000,
        "max_attempts": None,
        "retry_base_ms": None,
        "retry_cap_ms": None,
        **parts,
    }
    return TypeDigest(digest=tag * 16, **values)  # type: ignore[arg-type]


OURS = {"resize": digest(), "report": digest("b")}


def texts(found: list[Disagreement]) -> list[str]:
    return [str(disagreement) for disagreement in found]


def test_workers_that_run_the_same_types_agree() -> None:
    workers = [Published("h:1", dict(OURS)), Published("h:2", dict(OURS))]
    assert disagreements(OURS, workers) == []
    assert summary([]) == "ok"


def test_no_worker_at_all_is_one_line_not_one_per_type() -> None:
    assert texts(disagreements(OURS, [])) == [NO_WORKER]


def test_a_type_whose_schema_differs_names_the_part_and_the_workers() -> None:
    changed = digest("c", payload_schema="t" * 16)
    workers = [
        Published("h:1", {**OURS, "resize": changed}),
        Published("h:2", dict(OURS)),
        Published("h:3", {**OURS, "resize": changed}),
    ]
    assert texts(disagreements(OURS, workers)) == [
        "resize: payload schema differs between this API and workers h:1, h:3"
    ]


def test_every_part_that_differs_is_named() -> None:
    workers = [
        Published("h:1", {**OURS, "resize": digest("c", max_attempts=3)}),
        Published("h:2", {**OURS, "resize": digest("d", time_limit_ms=1, retry_cap_ms=9)}),
    ]
    assert texts(disagreements(OURS, workers)) == [
        "resize: max attempts, time limit, retry cap differ between this API and workers h:1, h:2"
    ]


def test_a_digest_that_differs_in_no_part_known_here_still_differs() -> None:
    """A later version may digest more than this one compares."""
    workers = [Published("h:1", {**OURS, "resize": digest("z")})]
    assert texts(disagreements(OURS, workers)) == [
        "resize: digest differs between this API and worker h:1"
    ]


def test_types_no_worker_runs_some_workers_lack_and_the_api_does_not_know() -> None:
    workers = [
        Published("h:1", {"resize": digest(), "thumbnail": digest("t")}),
        Published("h:2", {"resize": digest(), "report": digest("b"), "thumbnail": digest("t")}),
        Published("h:3", {"resize": digest(), "legacy": digest("l")}),
    ]
    assert texts(disagreements({**OURS, "email": digest("e")}, workers)) == [
        "email: no worker runs it",
        "report: not run by workers h:1, h:3",
        "legacy: run by worker h:3, unknown to this API",
        "thumbnail: run by workers h:1, h:2, unknown to this API",
    ]


def test_many_workers_are_named_three_and_counted() -> None:
    workers = [Published(f"h:{n}", {}) for n in range(7)]
    found = disagreements({"resize": digest()}, workers)
    assert texts(found) == ["resize: no worker runs it"]
    found = disagreements({}, [Published(f"h:{n}", {"x": digest()}) for n in range(5)])
    assert texts(found) == ["x: run by workers h:0, h:1, h:2 and 2 more, unknown to this API"]


def test_a_disagreement_is_the_same_whichever_workers_show_it() -> None:
    """What the API logs once: the type and the problem, not the workers of the moment."""
    changed = {**OURS, "resize": digest("c", payload_schema="t" * 16)}
    one = disagreements(OURS, [Published("h:1", changed)])
    two = disagreements(OURS, [Published("h:1", changed), Published("h:2", changed)])
    assert str(one[0]) != str(two[0])
    assert one[0].key == two[0].key
    other = disagreements(OURS, [Published("h:1", {**OURS, "resize": digest("c", max_attempts=1)})])
    assert other[0].key != one[0].key


def test_an_entry_this_version_cannot_read_is_named_by_its_worker() -> None:
    found = disagreements(OURS, ["3f9c", Published("h:1", dict(OURS))])
    assert texts(found) == ["worker 3f9c published job types this API cannot read"]
    assert texts(disagreements(OURS, ["3f9c"])) == [
        "worker 3f9c published job types this API cannot read"
    ]


def test_summary_joins_the_disagreements() -> None:
    found = disagreements(OURS, [Published("h:1", {"resize": digest()})])
    assert summary(found) == "report: no worker runs it"
    found = disagreements({**OURS, "email": digest()}, [Published("h:1", {"resize": digest()})])
    assert summary(found) == "email: no worker runs it; report: no worker runs it"


def test_what_a_worker_publishes_reads_back() -> None:
    entry = Published("h:1", dict(OURS))
    assert msgspec.json.decode(msgspec.json.encode(entry), type=Published) == entry


def test_an_entry_outlives_a_few_missed_heartbeats() -> None:
    assert ttl_ms(2_000) == 10_000
    assert ttl_ms(100) == 10_000  # never less than 10 s: a stalled second is no death
    assert ttl_ms(5_000) == 25_000
