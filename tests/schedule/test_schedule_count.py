"""Schedule.count_between is len(intervals_between) without making the intervals: checked against
it on crons and timedeltas, in zones with every kind of DST change, with and without bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from rota.model.schedule import Schedule

PROPERTY = settings(max_examples=100, deadline=None, database=None, derandomize=True)
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute shift
    "Pacific/Auckland",
    "America/Sao_Paulo",  # changes at midnight (until 2019)
    "America/Havana",  # changes at midnight
    "Asia/Tehran",
    "Africa/Casablanca",  # several changes a year
    "Asia/Kolkata",
]
SPARSE = ["0 3 * * *", "30 2 * * *", "0,30 1-3 * * *", "15 * * * *", "0 0 L * *", "0 12 * * 1-5"]
SPARSE += ["45 23 * 3,10 *", "0 0 1 1 *", "0 */6 1,15 * *", "5 0 * * 0", "0 2 * 3 0"]
DENSE = ["* * * * *", "*/7 * * * *", "* 2 * * *", "*/10 1-3 * * 0"]

START = st.datetimes(datetime(2010, 1, 1), datetime(2026, 1, 1), timezones=st.just(UTC))


def _check(schedule: Schedule, start: datetime, end: datetime) -> None:
    assert schedule.count_between(start, end) == len(schedule.intervals_between(start, end))


@PROPERTY
@given(
    cron=st.sampled_from(SPARSE),
    zone=st.sampled_from(ZONES),
    start=START,
    span=st.timedeltas(timedelta(0), timedelta(days=150)),
)
def test_sparse_crons_count_like_their_intervals(
    cron: str, zone: str, start: datetime, span: timedelta
) -> None:
    _check(Schedule.parse(cron, timezone=zone), start, start + span)


@settings(PROPERTY, max_examples=30)
@given(
    cron=st.sampled_from(DENSE),
    zone=st.sampled_from(ZONES),
    start=START,
    span=st.timedeltas(timedelta(0), timedelta(days=2)),
)
def test_dense_crons_count_like_their_intervals(
    cron: str, zone: str, start: datetime, span: timedelta
) -> None:
    _check(Schedule.parse(cron, timezone=zone), start, start + span)


def test_dense_crons_across_each_kind_of_dst_change() -> None:
    cases = [
        ("Europe/Berlin", datetime(2024, 3, 30, tzinfo=UTC)),  # spring forward
        ("Europe/Berlin", datetime(2024, 10, 26, tzinfo=UTC)),  # fall back
        ("Australia/Lord_Howe", datetime(2024, 4, 6, tzinfo=UTC)),  # back by 30 minutes
        ("America/Havana", datetime(2024, 3, 9, tzinfo=UTC)),  # at midnight
    ]
    for zone in (z for z, _ in cases):
        for cron in [*DENSE, "30 2 * * *", "0,30 2,3 * * *"]:
            for _, day in (c for c in cases if c[0] == zone):
                _check(Schedule.parse(cron, timezone=zone), day, day + timedelta(days=2))


@PROPERTY
@given(
    cron=st.sampled_from(SPARSE),
    zone=st.sampled_from(ZONES),
    start=START,
    span=st.timedeltas(timedelta(0), timedelta(days=200)),
    first=st.timedeltas(timedelta(days=-30), timedelta(days=120)),
    length=st.timedeltas(timedelta(days=1), timedelta(days=150)),
)
def test_bounds_are_counted_like_intervals_between_applies_them(
    cron: str,
    zone: str,
    start: datetime,
    span: timedelta,
    first: timedelta,
    length: timedelta,
) -> None:
    bounded = Schedule.parse(
        cron, timezone=zone, start_date=start + first, end_date=start + first + length
    )
    _check(bounded, start, start + span)


@PROPERTY
@given(
    every=st.timedeltas(timedelta(seconds=1), timedelta(days=9)),
    start=START,
    span=st.timedeltas(timedelta(0), timedelta(days=300)),
    anchor=st.none() | START,
)
def test_timedelta_schedules_count_like_their_intervals(
    every: timedelta, start: datetime, span: timedelta, anchor: datetime | None
) -> None:
    span = min(span, every * 5000)  # keep the list being compared with small
    _check(Schedule.parse(every, start_date=anchor), start, start + span)


def test_ten_years_of_a_minutely_cron_are_counted_exactly() -> None:
    schedule = Schedule.parse("* * * * *", timezone="Europe/Berlin")
    start, end = datetime(2016, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    # every minute of 3653 days, both ends included: DST changes add and remove the same hours
    assert schedule.count_between(start, end) == 3653 * 24 * 60 + 1
    named = Schedule.parse("30 2 * * *", timezone="Europe/Berlin")  # once per local day
    assert named.count_between(start, end) == 3653
