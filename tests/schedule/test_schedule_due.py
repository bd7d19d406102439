"""What a scheduler creates at a given time: catchup, bounds, backfill ranges; driven by a fake
clock that is advanced by hand, never by sleeping."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from rota.model.schedule import Clock, Interval, Schedule
from rota.testing import FakeClock

BERLIN = ZoneInfo("Europe/Berlin")


def at(year: int, month: int, day: int, hour: int = 0) -> datetime:
    """A Berlin wall time."""
    return datetime(year, month, day, hour, tzinfo=BERLIN)


def daily(**bounds: datetime) -> Schedule:
    return Schedule.parse("0 3 * * *", timezone="Europe/Berlin", **bounds)


def starts(intervals: list[Interval]) -> list[datetime]:
    return [iv.logical_date.astimezone(BERLIN) for iv in intervals]


def test_fake_clock_is_a_clock() -> None:
    clock: Clock = FakeClock(at(2026, 1, 1))
    assert clock.now() == at(2026, 1, 1)


# --- due: catchup after downtime ---------------------------------------------------------------


def test_catchup_after_ten_days_of_downtime_returns_every_missed_interval_in_order() -> None:
    schedule = daily(start_date=datetime(2026, 1, 1))
    clock = FakeClock(at(2026, 2, 2, 4))
    (last,) = schedule.due(clock.now(), at(2026, 1, 31, 3), catchup=True)
    assert last.logical_date == at(2026, 2, 1, 3)

    clock.advance(timedelta(days=10))  # the scheduler was down
    missed = schedule.due(clock.now(), last.logical_date, catchup=True)

    assert starts(missed) == [at(2026, 2, d, 3) for d in range(2, 12)]
    assert all(a.end == b.start for a, b in pairwise(missed))
    assert missed[-1].end == at(2026, 2, 12, 3)


def test_without_catchup_only_the_latest_complete_interval_is_due() -> None:
    schedule = daily(start_date=datetime(2026, 1, 1))
    clock = FakeClock(at(2026, 2, 12, 4))

    assert schedule.due(clock.now(), at(2026, 2, 1, 3), catchup=False) == [
        Interval(at(2026, 2, 11, 3), at(2026, 2, 12, 3))
    ]


def test_nothing_is_due_until_the_next_interval_ends() -> None:
    schedule = daily()
    clock = FakeClock(at(2026, 2, 12, 4))
    (latest,) = schedule.due(clock.now(), None, catchup=False)

    clock.advance(timedelta(hours=22, minutes=59, seconds=59))  # 02:59:59 next day
    assert schedule.due(clock.now(), latest.logical_date, catchup=True) == []
    clock.advance(timedelta(seconds=1))  # 03:00: the next interval is complete
    assert starts(schedule.due(clock.now(), latest.logical_date, catchup=True)) == [
        at(2026, 2, 12, 3)
    ]


def test_first_run_with_catchup_starts_at_start_date() -> None:
    schedule = daily(start_date=datetime(2026, 1, 1))
    due = schedule.due(at(2026, 1, 5, 12), None, catchup=True)
    assert starts(due) == [at(2026, 1, d, 3) for d in (1, 2, 3, 4)]


def test_first_run_without_start_date_has_no_history_to_catch_up() -> None:
    due = daily().due(at(2026, 1, 5, 12), None, catchup=True)
    assert starts(due) == [at(2026, 1, 4, 3)]


def test_catchup_when_the_last_run_is_not_on_a_tick_resumes_at_the_next_tick() -> None:
    # e.g. the schedule changed from 02:00 to 03:00 between two runs
    due = daily().due(at(2026, 1, 5, 12), at(2026, 1, 2, 2), catchup=True)
    assert starts(due) == [at(2026, 1, d, 3) for d in (2, 3, 4)]


def test_a_simulated_year_of_scheduler_ticks_creates_one_run_per_local_day() -> None:
    for cron in ("0 3 * * *", "30 2 * * *"):
        schedule = Schedule.parse(cron, timezone="Europe/Berlin", start_date=datetime(2026, 1, 1))
        clock = FakeClock(at(2026, 1, 1))
        created: list[Interval] = []
        while clock.now() < at(2027, 1, 1, 4):
            last = created[-1].logical_date if created else None
            created += schedule.due(clock.now(), last, catchup=False)
            clock.advance(timedelta(minutes=100))  # not a divisor of a day

        days = [iv.logical_date.astimezone(BERLIN).date() for iv in created]
        assert days == [date(2026, 1, 1) + timedelta(days=i) for i in range(365)], cron


# --- bounds --------------------------------------------------------------------------------------


def test_start_date_off_tick_begins_at_the_first_tick_after_it() -> None:
    schedule = daily(start_date=datetime(2026, 1, 1, 10))
    assert schedule.latest_complete(at(2026, 1, 3, 2)) is None  # only one tick in bounds so far
    assert schedule.next_after(at(2025, 6, 1)) == Interval(at(2026, 1, 2, 3), at(2026, 1, 3, 3))
    assert starts(schedule.due(at(2026, 1, 4, 3), None, catchup=True)) == [
        at(2026, 1, 2, 3),
        at(2026, 1, 3, 3),
    ]


def test_end_date_is_inclusive_and_nothing_falls_due_after_it() -> None:
    schedule = daily(start_date=datetime(2026, 1, 1), end_date=datetime(2026, 1, 10, 3))
    everything = schedule.intervals_between(at(2025, 1, 1), at(2027, 1, 1))

    assert starts(everything) == [at(2026, 1, d, 3) for d in range(1, 10)]
    assert everything[-1].end == at(2026, 1, 10, 3)
    assert schedule.next_after(at(2026, 1, 10, 3)) is None
    assert schedule.latest_complete(at(2026, 6, 1)) == everything[-1]
    assert schedule.due(at(2026, 6, 1), everything[-1].logical_date, catchup=True) == []


def test_an_end_date_between_ticks_drops_the_interval_it_cuts() -> None:
    schedule = daily(end_date=datetime(2026, 1, 10, 12))
    assert schedule.latest_complete(at(2026, 6, 1)) == Interval(
        at(2026, 1, 9, 3), at(2026, 1, 10, 3)
    )


def test_future_start_date_means_nothing_is_due() -> None:
    schedule = daily(start_date=datetime(2027, 1, 1))
    assert schedule.due(at(2026, 6, 1), None, catchup=True) == []
    assert schedule.latest_complete(at(2026, 6, 1)) is None


def test_aware_bounds_are_normalised_to_utc() -> None:
    schedule = daily(start_date=at(2026, 1, 1))
    assert schedule.start_date == datetime(2025, 12, 31, 23, tzinfo=UTC)
    assert schedule.start_date.tzinfo is UTC


def test_a_naive_bound_in_the_gap_is_read_by_the_dst_policy() -> None:
    schedule = daily(start_date=datetime(2026, 3, 29, 2, 30))  # does not exist in Berlin
    assert schedule.start_date == at(2026, 3, 29, 3) + timedelta(minutes=30)  # a gap's length on
    assert schedule.localize(datetime(2026, 10, 25, 2, 30)) == datetime(
        2026, 10, 25, 1, 30, tzinfo=UTC
    )  # second occurrence, as Airflow's make_aware reads it


# --- next_after, latest_complete, backfill ranges -----------------------------------------------


def test_next_after_is_the_first_interval_ending_strictly_after() -> None:
    schedule = daily()
    expected = Interval(at(2026, 1, 5, 3), at(2026, 1, 6, 3))
    assert schedule.next_after(at(2026, 1, 5, 12)) == expected
    assert schedule.next_after(at(2026, 1, 5, 3)) == expected
    assert schedule.next_after(at(2026, 1, 6, 3) - timedelta(microseconds=1)) == expected
    assert schedule.next_after(at(2026, 1, 6, 3)) == Interval(at(2026, 1, 6, 3), at(2026, 1, 7, 3))


def test_latest_complete_counts_an_interval_ending_exactly_now() -> None:
    schedule = daily()
    assert schedule.latest_complete(at(2026, 1, 6, 3)) == Interval(
        at(2026, 1, 5, 3), at(2026, 1, 6, 3)
    )


def test_backfill_takes_the_intervals_whose_logical_date_is_in_the_closed_range() -> None:
    schedule = Schedule.parse("@daily", timezone="Europe/Berlin")
    forward = schedule.intervals_between(at(2026, 1, 1), at(2026, 1, 31))

    assert len(forward) == 31  # --end is the latest logical date included (Airflow)
    assert forward[0] == Interval(at(2026, 1, 1), at(2026, 1, 2))
    assert forward[-1] == Interval(at(2026, 1, 31), at(2026, 2, 1))


def test_reverse_backfill_is_newest_first() -> None:
    schedule = Schedule.parse(timedelta(hours=6))
    lo, hi = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
    forward = schedule.intervals_between(lo, hi)
    backward = schedule.intervals_between(lo, hi, reverse=True)

    assert len(forward) == 9
    assert backward == forward[::-1]
    assert backward[0].start == hi and backward[-1].start == lo


def test_an_empty_or_inverted_range_has_no_intervals() -> None:
    schedule = daily()
    assert schedule.intervals_between(at(2026, 1, 5, 4), at(2026, 1, 6, 2)) == []
    assert schedule.intervals_between(at(2026, 1, 9), at(2026, 1, 1)) == []


@pytest.mark.parametrize("value", ["0 3 * * *", timedelta(days=1)])
def test_timedelta_and_cron_agree_where_they_should(value: str | timedelta) -> None:
    schedule = Schedule.parse(value, start_date=datetime(2026, 1, 1, 3, tzinfo=UTC))
    got = schedule.intervals_between(
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 4, 3, tzinfo=UTC)
    )
    assert [iv.start.day for iv in got] == [1, 2, 3, 4]
