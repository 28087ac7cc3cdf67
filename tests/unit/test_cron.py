"""Cron schedules: parsing, due times across DST changes, and what fires after downtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

from ferry.cron import Cron, CronError, Missed, firing

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
GRACE = timedelta(seconds=60)


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
    zone: tzinfo = UTC,
) -> datetime:  # fmt: skip
    return datetime(year, month, day, hour, minute, second, tzinfo=zone)


def local(times: list[datetime], zone: ZoneInfo) -> list[str]:
    return [time.astimezone(zone).strftime("%m-%d %H:%M:%S %Z") for time in times]


# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "zone", "says"),
    [
        ("* * *", "UTC", "wrong number of fields (5: minute hour"),
        ("61 * * * *", "UTC", "bad minute"),
        ("* * 31 2 *", "UTC", "bad day-of-month"),
        ("0 0 * * * * *", "UTC", "wrong number of fields"),
        ("0 9 * * *", "Mars/Olympus_Mons", "is not a time zone"),
        ("0 9 * * *", "../../etc/passwd", "is not a time zone"),
        ("0 9 * * *", "", "is not a time zone"),
    ],
)
def test_a_bad_expression_or_zone_says_what_is_wrong(expression: str, zone: str, says: str) -> None:
    with pytest.raises(CronError, match=r"(?i)" + says.replace("(", r"\(")):
        Cron.parse(expression, zone)


def test_five_fields_are_minutes_and_six_start_with_seconds() -> None:
    start = at(2026, 1, 1, 12, 0, 0)
    assert Cron.parse("*/15 * * * *").upcoming(start, 2) == [
        at(2026, 1, 1, 12, 15),
        at(2026, 1, 1, 12, 30),
    ]
    assert Cron.parse("*/10 * * * * *").upcoming(start, 2) == [
        at(2026, 1, 1, 12, 0, 10),
        at(2026, 1, 1, 12, 0, 20),
    ]
    assert Cron.parse("  0   9 * * 1-5 ").expression == "0 9 * * 1-5"
    assert Cron.parse("0 9 * * 1-5").describe() == "At 09:00 on Monday through Friday"


def test_after_is_strictly_after_and_latest_is_at_or_before() -> None:
    cron = Cron.parse("* * * * * *")
    moment = at(2026, 1, 1, 0, 0, 5)
    assert cron.after(moment) == at(2026, 1, 1, 0, 0, 6)
    assert cron.latest(moment) == moment
    assert cron.latest(moment + timedelta(milliseconds=300)) == moment
    hourly = Cron.parse("0 * * * *")
    assert hourly.latest(at(2026, 1, 1, 5, 59, 59)) == at(2026, 1, 1, 5)


def test_due_times_are_in_the_schedules_zone_and_come_out_in_utc() -> None:
    cron = Cron.parse("0 9 * * *", "Europe/Berlin")
    [first] = cron.upcoming(at(2026, 1, 1), 1)
    assert first == at(2026, 1, 1, 8)  # 09:00 CET
    assert first.tzinfo is UTC
    [summer] = cron.upcoming(at(2026, 7, 1), 1)
    assert summer == at(2026, 7, 1, 7)  # 09:00 CEST


# -- DST (cronsim follows Debian's cron) --------------------------------------------------


def test_a_time_the_clock_skips_fires_right_after_the_change() -> None:
    # 2026-03-08, New York: 02:00 EST becomes 03:00 EDT; 02:30 does not exist that day.
    cron = Cron.parse("30 2 * * *", "America/New_York")
    times = cron.upcoming(at(2026, 3, 7, 12, zone=NEW_YORK), 3)
    assert local(times, NEW_YORK) == [
        "03-08 03:00:00 EDT",
        "03-09 02:30:00 EDT",
        "03-10 02:30:00 EDT",
    ]


def test_a_fixed_time_the_clock_repeats_fires_once() -> None:
    # 2026-11-01, New York: 02:00 EDT becomes 01:00 EST; 01:30 happens twice.
    cron = Cron.parse("30 1 * * *", "America/New_York")
    times = cron.upcoming(at(2026, 10, 31, 12, zone=NEW_YORK), 2)
    assert local(times, NEW_YORK) == ["11-01 01:30:00 EDT", "11-02 01:30:00 EST"]


def test_an_hourly_schedule_fires_in_both_repeated_hours() -> None:
    cron = Cron.parse("0 * * * *", "America/New_York")
    times = cron.upcoming(at(2026, 11, 1, 0, 10, zone=NEW_YORK), 4)
    assert local(times, NEW_YORK) == [
        "11-01 01:00:00 EDT",
        "11-01 01:00:00 EST",
        "11-01 02:00:00 EST",
        "11-01 03:00:00 EST",
    ]
    # One hour apart in real time, though the wall clock shows 01:00 twice.
    assert times[1] - times[0] == timedelta(hours=1)


def test_from_inside_the_repeated_hour_nothing_fires_again() -> None:
    # Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 CEST (00:30Z) fired already,
    # and 02:30 CET (01:30Z) is the repeat a fixed time does not fire at.
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    for minute in (0, 10, 29, 30, 31, 59):
        inside = at(2026, 10, 25, 1, minute)  # 02:xx CET, the second pass
        assert cron.after(inside) == at(2026, 10, 26, 1, 30), inside
        assert cron.latest(inside) == at(2026, 10, 25, 0, 30), inside
    decision = firing(cron, at(2026, 10, 26, 1, 30), at(2026, 10, 25, 1, 10), Missed.ONCE, GRACE)
    assert decision.due == []  # not due yet: nothing before it comes again
    hourly = Cron.parse("0 * * * *", "Europe/Berlin")
    assert hourly.after(at(2026, 10, 25, 1, 10)) == at(2026, 10, 25, 2)


def test_latest_looks_back_across_a_change_in_the_schedules_zone() -> None:
    # Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST.
    cron = Cron.parse("0 9 * * *", "Europe/Berlin")
    assert cron.latest(at(2026, 3, 29, 12, zone=BERLIN)) == at(2026, 3, 29, 7)
    assert cron.latest(at(2026, 3, 29, 8, zone=BERLIN)) == at(2026, 3, 28, 8)


# -- what fires ------------------------------------------------------------------------


EVERY_MINUTE = Cron.parse("* * * * *")
HOURLY = Cron.parse("0 * * * *")


@pytest.mark.parametrize("missed", list(Missed))
def test_a_due_time_on_time_fires_once_then_waits_for_the_next(missed: Missed) -> None:
    due = at(2026, 1, 1, 12, 0)
    now = due + timedelta(milliseconds=40)
    decision = firing(EVERY_MINUTE, due, now, missed, GRACE)
    assert (decision.due, decision.next, decision.missed) == ([due], at(2026, 1, 1, 12, 1), False)


@pytest.mark.parametrize("missed", list(Missed))
def test_due_times_late_within_the_grace_each_fire(missed: Missed) -> None:
    every_10_s = Cron.parse("*/10 * * * * *")
    due = at(2026, 1, 1, 12, 0, 0)
    now = at(2026, 1, 1, 12, 0, 35)  # a slow tick: 4 due times passed, none past the grace
    decision = firing(every_10_s, due, now, missed, GRACE)
    assert decision.due == [due + timedelta(seconds=s) for s in (0, 10, 20, 30)]
    assert (decision.next, decision.missed) == (at(2026, 1, 1, 12, 0, 40), False)


def test_skip_gives_what_was_missed_no_run() -> None:
    due = at(2026, 1, 1, 12, 0)
    now = at(2026, 1, 1, 15, 30)  # 3.5 hours of downtime: 15:00 is 30 minutes late
    decision = firing(HOURLY, due, now, Missed.SKIP, GRACE)
    assert decision.due == []
    assert decision.next == at(2026, 1, 1, 16)
    assert decision.missed


def test_once_catches_up_with_one_run_for_the_latest_missed_due_time() -> None:
    due = at(2026, 1, 1, 12, 0)
    now = at(2026, 1, 3, 9, 0, 30)  # two days down: thousands of due times, one run
    decision = firing(EVERY_MINUTE, due, now, Missed.ONCE, timedelta(seconds=10))
    # 08:59 is the latest missed; 09:00 is 30 s late, past the 10 s grace: missed too.
    assert decision.due == [at(2026, 1, 3, 9, 0)]
    assert decision.next == at(2026, 1, 3, 9, 1)
    assert decision.missed


def test_once_then_the_due_times_within_the_grace() -> None:
    every_second = Cron.parse("* * * * * *")
    due = at(2026, 1, 1, 12, 0, 0)
    now = at(2026, 1, 1, 12, 0, 6)
    decision = firing(every_second, due, now, Missed.ONCE, timedelta(seconds=2))
    # 12:00:00 to 12:00:03 were missed (one run, for :03); :04 to :06 are within the grace.
    assert decision.due == [due + timedelta(seconds=s) for s in (3, 4, 5, 6)]
    skip = firing(every_second, due, now, Missed.SKIP, timedelta(seconds=2))
    assert skip.due == [due + timedelta(seconds=s) for s in (4, 5, 6)]


def test_a_single_missed_due_time_is_caught_up_by_once_without_loss() -> None:
    daily = Cron.parse("0 3 * * *")
    due = at(2026, 1, 1, 3)
    now = due + timedelta(minutes=5)
    assert firing(daily, due, now, Missed.SKIP, GRACE).due == []
    once = firing(daily, due, now, Missed.ONCE, GRACE)
    assert (once.due, once.missed) == ([due], False)
    assert firing(daily, due, now, Missed.SKIP, timedelta(minutes=10)).due == [due]
