"""How many jobs of a message one thread runs, and the ack held for all of them (pure)."""

from __future__ import annotations

from ferry.queue.group_ack import AckHold
from ferry.worker.bundles import BUDGET_S, SHORT_S, BundleHold, Durations, split


def test_a_type_never_measured_runs_its_first_job_alone() -> None:
    assert split(["a", "b", "c"], None) == (["a"], ["b", "c"])


def test_as_many_jobs_as_fit_in_the_budget_run_on_the_thread() -> None:
    assert split(list(range(10)), BUDGET_S / 4) == ([0, 1, 2, 3], [4, 5, 6, 7, 8, 9])
    assert split(list(range(10)), BUDGET_S / 1000) == (list(range(10)), [])


def test_a_job_longer_than_the_budget_still_runs_one() -> None:
    assert split(["a", "b"], BUDGET_S * 10) == (["a"], ["b"])


def test_a_type_instant_on_average_takes_the_whole_message() -> None:
    assert split(["a", "b"], 0.0) == (["a", "b"], [])


def test_durations_start_at_the_first_and_move_slowly_per_type() -> None:
    durations = Durations()
    assert durations.typical("sleep") is None
    durations.add("sleep", 0.010)
    assert durations.typical("sleep") == 0.010
    durations.add("sleep", 1.010)  # one slow job moves the average a twentieth of the way
    assert abs(durations.typical("sleep") - 0.060) < 1e-9  # type: ignore[operator]
    assert durations.typical("email") is None


def test_the_ack_goes_with_the_last_job_recorded_and_not_before() -> None:
    acked: list[str] = []
    released: list[str] = []
    hold = AckHold()
    bundle = BundleHold(3, hold, lambda: released.append("slot"))
    for _ in range(2):
        bundle.release()
    assert hold.defer(lambda: acked.append("ack"))  # still held: the ack waits
    assert acked == [] and released == []
    bundle.release()
    assert released == ["slot"] and acked == ["ack"]


def test_short_types_are_those_of_which_several_fit_the_budget() -> None:
    durations = Durations()
    durations.add("sleep", SHORT_S / 2)
    durations.add("email", SHORT_S * 2)
    assert durations.short() == ["sleep"]
