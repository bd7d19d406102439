"""Schedule maths over a simulated year (2026) in zones with DST: one run per local day, exact
timedelta intervals, and the documented gap/fold policy (Airflow's CronDataIntervalTimetable: a
fold's wall time runs at its second occurrence, a gap's moves forward by the gap's length)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from rota.model.schedule import Interval, Schedule

ZONES = ["Europe/Berlin", "America/New_York"]
# 2026's transitions, local dates: (spring forward, fall back)
DST_DAYS = {
    "Europe/Berlin": (date(2026, 3, 29), date(2026, 10, 25)),
    "America/New_York": (date(2026, 3, 8), date(2026, 11, 1)),
}
DAYS_2026 = [date(2026, 1, 1) + timedelta(days=i) for i in range(365)]


def year_of(schedule: Schedule, zone: ZoneInfo) -> list[Interval]:
    """The intervals of *schedule* that start on a local day of 2026."""
    lo = datetime(2025, 12, 30, tzinfo=zone)
    hi = datetime(2027, 1, 3, tzinfo=zone)
    return [
        iv
        for iv in schedule.intervals_between(lo, hi)
        if iv.start.astimezone(zone).date().year == 2026
    ]


def local(iv_instant: datetime, zone: ZoneInfo) -> datetime:
    return iv_instant.astimezone(zone)


@pytest.mark.parametrize("name", ZONES)
def test_daily_cron_runs_once_per_local_day_at_its_wall_time(name: str) -> None:
    zone = ZoneInfo(name)
    intervals = year_of(Schedule.parse("0 3 * * *", timezone=name), zone)

    assert [local(iv.start, zone).date() for iv in intervals] == DAYS_2026
    assert all(local(iv.start, zone).time() == time(3, 0) for iv in intervals)
    assert all(iv.start.tzinfo is UTC and iv.end.tzinfo is UTC for iv in intervals)
    # the interval spanning a transition is 23 or 25 hours of elapsed time, all others 24
    lengths = Counter(iv.end - iv.start for iv in intervals)
    assert lengths == {timedelta(hours=24): 363, timedelta(hours=23): 1, timedelta(hours=25): 1}


@pytest.mark.parametrize("name", ZONES)
def test_daily_cron_in_the_gap_moves_forward_by_the_gaps_length(name: str) -> None:
    zone = ZoneInfo(name)
    spring, _ = DST_DAYS[name]
    intervals = year_of(Schedule.parse("30 2 * * *", timezone=name), zone)

    assert [local(iv.start, zone).date() for iv in intervals] == DAYS_2026
    by_day = {local(iv.start, zone).date(): local(iv.start, zone) for iv in intervals}
    # 02:30 does not exist: the clock jumps from 02:00 to 03:00, so it runs an hour later, at
    # 03:30 summer time (Airflow: make_aware(fold=1), pendulum's post-transition rule)
    assert by_day[spring].time() == time(3, 30)
    assert by_day[spring].utcoffset() == datetime(2026, 7, 1, tzinfo=zone).utcoffset()
    others = [d for d in DAYS_2026 if d != spring]
    assert all(by_day[d].time() == time(2, 30) for d in others)


@pytest.mark.parametrize(
    ("name", "cron", "wall"),
    [("Europe/Berlin", "30 2 * * *", time(2, 30)), ("America/New_York", "30 1 * * *", time(1, 30))],
)
def test_daily_cron_in_the_fold_runs_once_at_the_second_occurrence(
    name: str, cron: str, wall: time
) -> None:
    zone = ZoneInfo(name)
    _, autumn = DST_DAYS[name]
    intervals = year_of(Schedule.parse(cron, timezone=name), zone)

    assert [local(iv.start, zone).date() for iv in intervals] == DAYS_2026
    (on_fold_day,) = [iv for iv in intervals if local(iv.start, zone).date() == autumn]
    start = local(on_fold_day.start, zone)
    assert start.time() == wall
    # the second occurrence is the one with the winter-time (smaller) offset (Airflow)
    assert start.utcoffset() == datetime(2026, 1, 1, tzinfo=zone).utcoffset()
    assert on_fold_day.end - on_fold_day.start == timedelta(hours=24)
    (day_before,) = [iv for iv in intervals if iv.end == on_fold_day.start]
    assert day_before.end - day_before.start == timedelta(hours=25)


@pytest.mark.parametrize("name", ZONES)
def test_hourly_follows_the_wall_clock_23_and_25_hours_on_transition_days(name: str) -> None:
    zone = ZoneInfo(name)
    spring, autumn = DST_DAYS[name]
    intervals = year_of(Schedule.parse("@hourly", timezone=name), zone)

    per_day = Counter(local(iv.start, zone).date() for iv in intervals)
    assert per_day[spring] == 23
    assert per_day[autumn] == 25
    assert all(per_day[d] == 24 for d in DAYS_2026 if d not in (spring, autumn))
    assert len(intervals) == 365 * 24
    assert all(iv.end - iv.start == timedelta(hours=1) for iv in intervals)
    assert all(local(iv.start, zone).minute == 0 for iv in intervals)


@pytest.mark.parametrize("name", ["UTC", *ZONES])
def test_timedelta_intervals_are_exactly_six_hours_apart_in_utc_all_year(name: str) -> None:
    schedule = Schedule.parse(timedelta(hours=6), timezone=name)
    intervals = schedule.intervals_between(  # logical dates in [start, end]: 2026's last is 18:00
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 31, 18, tzinfo=UTC)
    )

    assert len(intervals) == 365 * 4
    assert all(iv.end - iv.start == timedelta(hours=6) for iv in intervals)
    assert all(a.end == b.start for a, b in pairwise(intervals))
    # anchored at the Unix epoch: whole multiples of 6 h in UTC, whatever the zone
    assert {iv.start.hour for iv in intervals} == {0, 6, 12, 18}
    assert intervals[-1].end == datetime(2027, 1, 1, tzinfo=UTC)


def test_timedelta_is_anchored_at_start_date_and_keeps_elapsed_time_across_dst() -> None:
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 1, 1, 1, 15)  # naive: wall time in the schedule's zone
    schedule = Schedule.parse(timedelta(hours=6), timezone="Europe/Berlin", start_date=start)
    intervals = schedule.intervals_between(
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    )

    assert intervals[0].start == datetime(2026, 1, 1, 1, 15, tzinfo=zone)
    assert all(iv.end - iv.start == timedelta(hours=6) for iv in intervals)
    # the wall time shifts by an hour in summer; the elapsed spacing never does
    summer = [iv for iv in intervals if iv.start.month == 7]
    assert {local(iv.start, zone).time() for iv in summer} == {
        time(2, 15),
        time(8, 15),
        time(14, 15),
        time(20, 15),
    }


def test_weekly_monthly_yearly_presets_follow_local_midnight() -> None:
    zone = ZoneInfo("Europe/Berlin")
    lo, hi = datetime(2026, 1, 1, tzinfo=zone), datetime(2026, 12, 31, tzinfo=zone)

    weekly = Schedule.parse("@weekly", timezone="Europe/Berlin").intervals_between(lo, hi)
    monthly = Schedule.parse("@monthly", timezone="Europe/Berlin").intervals_between(lo, hi)
    yearly = Schedule.parse("@yearly", timezone="Europe/Berlin").intervals_between(lo, hi)

    assert len(weekly) == 52
    assert all(local(iv.end, zone).weekday() == 6 for iv in weekly)  # Sunday
    assert [local(iv.end, zone).date() for iv in monthly] == [
        *(date(2026, m, 1) for m in range(2, 13)),
        date(2027, 1, 1),
    ]
    assert [(iv.start, iv.end) for iv in yearly] == [(lo, datetime(2027, 1, 1, tzinfo=zone))]
    assert all(local(iv.end, zone).time() == time(0, 0) for iv in [*weekly, *monthly])


def test_a_named_hour_in_the_fold_is_still_ahead_during_the_first_pass() -> None:
    # (instants in UTC: Python compares two datetimes of one zone by wall time, ignoring fold)
    zone = ZoneInfo("Europe/Berlin")
    schedule = Schedule.parse("45 2 * * *", timezone="Europe/Berlin")
    first_pass_late = datetime(2026, 10, 25, 2, 50, tzinfo=zone).astimezone(UTC)  # CEST
    second_pass = datetime(2026, 10, 25, 2, 45, fold=1, tzinfo=zone).astimezone(UTC)  # CET
    second_pass_early = datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=zone).astimezone(UTC)

    # the clock showed 02:45 once already, but the tick is its second occurrence, still ahead
    nxt = schedule.next_after(first_pass_late)
    assert nxt is not None
    assert nxt.end == second_pass
    assert local(nxt.start, zone).replace(tzinfo=None) == datetime(2026, 10, 24, 2, 45)
    latest = schedule.latest_complete(second_pass_early)
    assert latest is not None
    assert latest.end == datetime(2026, 10, 24, 2, 45, tzinfo=zone)
    after = schedule.next_after(second_pass)
    assert after is not None
    assert (after.start, local(after.end, zone).replace(tzinfo=None)) == (
        second_pass,
        datetime(2026, 10, 26, 2, 45),
    )


def test_hourly_in_the_fold_ticks_on_both_passes() -> None:
    zone = ZoneInfo("Europe/Berlin")
    schedule = Schedule.parse("0 * * * *", timezone="Europe/Berlin")

    def berlin(hour: int, minute: int, fold: int) -> datetime:
        return datetime(2026, 10, 25, hour, minute, fold=fold, tzinfo=zone).astimezone(UTC)

    nxt = schedule.next_after(berlin(2, 30, fold=0))
    assert nxt is not None
    assert nxt.end == berlin(2, 0, fold=1)
    latest = schedule.latest_complete(berlin(2, 30, fold=1))
    assert latest is not None
    assert (latest.start, latest.end) == (berlin(2, 0, fold=0), berlin(2, 0, fold=1))
