"""Backfill ranges and DST as Airflow computes them (issue 10, section 4): each example with the
result Airflow gives beside it (``iter_dagrun_infos_between`` for ranges, ``CronMixin`` with
``make_aware(fold=1)`` for wall times), plus the manual-run interval
(``infer_manual_data_interval``) and the reason a range holds nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from rota.model.schedule import Interval, Schedule

BERLIN = ZoneInfo("Europe/Berlin")
ZURICH = ZoneInfo("Europe/Zurich")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- ranges: --end is the latest logical date included; a start moves forward to a boundary ---


def test_a_daily_backfill_of_march_1_to_30_is_30_intervals() -> None:
    daily = Schedule.parse("@daily")
    got = daily.intervals_between(utc(2026, 3, 1), utc(2026, 3, 30))

    assert len(got) == 30  # Airflow: 30 (Rota gave 29: it took intervals *ending* in the range)
    assert got[0] == Interval(utc(2026, 3, 1), utc(2026, 3, 2))
    assert got[-1] == Interval(utc(2026, 3, 30), utc(2026, 3, 31))  # the latest logical date
    assert daily.count_between(utc(2026, 3, 1), utc(2026, 3, 30)) == 30  # the cap counts the same


def test_a_start_off_the_boundary_moves_forward_to_the_next_one() -> None:
    daily = Schedule.parse("@daily")
    got = daily.intervals_between(utc(2026, 3, 1, 12), utc(2026, 3, 30))

    assert got[0].logical_date == utc(2026, 3, 2)  # Airflow: first run 03-02 (Rota had 03-01)
    assert len(got) == 29
    assert daily.count_between(utc(2026, 3, 1, 12), utc(2026, 3, 30)) == 29


def test_one_date_is_one_interval_and_an_end_between_boundaries_keeps_the_last_before_it() -> None:
    daily = Schedule.parse("@daily")
    assert daily.intervals_between(utc(2026, 3, 5), utc(2026, 3, 5)) == [
        Interval(utc(2026, 3, 5), utc(2026, 3, 6))
    ]  # Airflow: backfill -s D -e D runs D
    got = daily.intervals_between(utc(2026, 3, 5), utc(2026, 3, 7, 18))
    assert [iv.logical_date.day for iv in got] == [5, 6, 7]


def test_a_timedelta_range_takes_the_ticks_in_it_both_ends_included() -> None:
    six_hours = Schedule.parse(timedelta(hours=6), start_date=utc(2026, 1, 1))
    got = six_hours.intervals_between(utc(2026, 1, 1, 3), utc(2026, 1, 2, 6))

    assert [iv.logical_date for iv in got] == [
        utc(2026, 1, 1, 6), utc(2026, 1, 1, 12), utc(2026, 1, 1, 18), utc(2026, 1, 2),
        utc(2026, 1, 2, 6),
    ]  # fmt: skip
    assert six_hours.count_between(utc(2026, 1, 1, 3), utc(2026, 1, 2, 6)) == 5


# --- cron across DST: Airflow's CronDataIntervalTimetable -------------------------------------


def test_on_a_fold_an_interval_ends_at_the_second_occurrence() -> None:
    schedule = Schedule.parse("0 2 * * *", timezone="Europe/Zurich")
    (interval,) = schedule.intervals_between(
        datetime(2023, 10, 28, tzinfo=ZURICH), datetime(2023, 10, 28, 23, tzinfo=ZURICH)
    )
    # Airflow: [2023-10-28 00:00Z, 2023-10-29 01:00Z): 02:00 CET, the repeated wall time's second
    # occurrence (Rota ended it at the first, 00:00Z)
    assert interval == Interval(utc(2023, 10, 28, 0), utc(2023, 10, 29, 1))
    nxt = schedule.next_after(interval.end)
    assert nxt is not None
    assert nxt == Interval(utc(2023, 10, 29, 1), utc(2023, 10, 30, 1))


def test_a_wall_time_in_a_gap_moves_forward_by_the_gaps_length() -> None:
    schedule = Schedule.parse("30 2 * * *", timezone="Europe/Berlin")
    got = schedule.intervals_between(
        datetime(2026, 3, 28, tzinfo=BERLIN), datetime(2026, 3, 29, 23, tzinfo=BERLIN)
    )
    starts = [iv.start.astimezone(BERLIN).isoformat() for iv in got]
    # Airflow: 03:30 CEST on 2026-03-29 (Rota ran it at the gap's end, 03:00)
    assert starts == ["2026-03-28T02:30:00+01:00", "2026-03-29T03:30:00+02:00"]
    assert got[0].end == got[1].start == utc(2026, 3, 29, 1, 30)


def test_a_start_inside_the_moved_stretch_still_finds_the_moved_tick() -> None:
    # 02:30 moved to 03:30 CEST, so at 03:10 CEST it is still ahead. (Airflow's walk starts from
    # the wall time 03:10 and finds the next day's 02:30 first; Rota keeps the day's tick.)
    schedule = Schedule.parse("30 2 * * *", timezone="Europe/Berlin")
    t = datetime(2026, 3, 29, 3, 10, tzinfo=BERLIN)
    nxt = schedule.next_after(t)
    assert nxt is not None
    assert nxt.end == datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN)
    (first, *_) = schedule.intervals_between(t, t + timedelta(days=2))
    assert first.start == datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN)


def test_a_moved_wall_time_that_passes_later_ones_keeps_every_tick() -> None:
    # Lord Howe jumps 30 minutes, 02:00 -> 02:30: 02:20 moves to 02:50, past 02:40, which exists.
    # Each matching wall time keeps its tick, in the order of the instants.
    zone = ZoneInfo("Australia/Lord_Howe")
    schedule = Schedule.parse("20,40 2 * * *", timezone="Australia/Lord_Howe")
    day = datetime(2026, 10, 4, tzinfo=zone)
    got = schedule.intervals_between(day, day + timedelta(hours=23))

    assert [iv.start.astimezone(zone).isoformat() for iv in got] == [
        "2026-10-04T02:40:00+11:00",
        "2026-10-04T02:50:00+11:00",
    ]
    assert schedule.count_between(day, day + timedelta(hours=23)) == 2
    latest = schedule.latest_complete(datetime(2026, 10, 4, 2, 55, tzinfo=zone))
    assert latest is not None
    assert latest.start.astimezone(zone).isoformat() == "2026-10-04T02:40:00+11:00"


# --- manual runs and single dates ---------------------------------------------------------------


def test_a_manual_run_covers_the_last_complete_interval_as_in_airflow() -> None:
    daily = Schedule.parse("@daily", start_date=utc(2027, 1, 1))  # bounds do not apply to it
    # Airflow's infer_manual_data_interval: a run at 01:00 on the 25th covers the 24th
    assert daily.manual_interval(utc(2026, 3, 25, 1)) == Interval(
        utc(2026, 3, 24), utc(2026, 3, 25)
    )
    assert daily.manual_interval(utc(2026, 3, 25)) == Interval(utc(2026, 3, 24), utc(2026, 3, 25))
    # a timedelta: the interval of that length ending at the trigger time
    every = Schedule.parse(timedelta(hours=6))
    t = utc(2026, 3, 25, 7, 13)
    assert every.manual_interval(t) == Interval(t - timedelta(hours=6), t)


def test_interval_at_a_logical_date_is_the_scheduled_one_and_none_off_a_boundary() -> None:
    schedule = Schedule.parse("0 3 * * *", timezone="Europe/Berlin")
    at = datetime(2026, 3, 1, 3, tzinfo=BERLIN)
    assert schedule.interval_at(at) == Interval(at, datetime(2026, 3, 2, 3, tzinfo=BERLIN))
    assert schedule.interval_at(datetime(2026, 3, 1, tzinfo=BERLIN)) is None
    assert schedule.neighbours(datetime(2026, 3, 1, tzinfo=BERLIN)) == (
        datetime(2026, 2, 28, 3, tzinfo=BERLIN),
        at,
    )


# --- why a range is empty ------------------------------------------------------------------------


def test_a_range_before_start_date_says_why_it_has_no_intervals() -> None:
    daily = Schedule.parse("@daily", start_date=utc(2026, 6, 1))
    assert daily.intervals_between(utc(2026, 1, 1), utc(2026, 1, 31)) == []
    assert daily.why_empty(utc(2026, 1, 1), utc(2026, 1, 31)) == (
        "the range ends before the schedule's start_date 2026-06-01T00:00:00+00:00: "
        "its first logical date is 2026-06-01T00:00:00+00:00"
    )


def test_a_range_after_end_date_or_between_boundaries_says_why() -> None:
    bounded = Schedule.parse("@daily", end_date=utc(2026, 1, 10))
    assert bounded.intervals_between(utc(2026, 2, 1), utc(2026, 2, 5)) == []
    assert bounded.why_empty(utc(2026, 2, 1), utc(2026, 2, 5)) == (
        "the range begins after the last interval that ends by the schedule's end_date "
        "2026-01-10T00:00:00+00:00 (logical date 2026-01-09T00:00:00+00:00)"
    )
    daily = Schedule.parse("@daily", timezone="Europe/Berlin")
    assert daily.why_empty(utc(2026, 1, 5, 2), utc(2026, 1, 5, 20)) == (
        "no logical date of the schedule lies in [2026-01-05T03:00:00+01:00, "
        "2026-01-05T21:00:00+01:00]: the one before is 2026-01-05T00:00:00+01:00, the next "
        "2026-01-06T00:00:00+01:00"
    )
