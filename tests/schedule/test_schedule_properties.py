"""Properties of cron schedules around DST transitions, checked against a brute-force oracle that
reads the wall clock minute by minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from rota.model.schedule import Schedule

PROPERTY = settings(max_examples=150, deadline=None, database=None, derandomize=True)
QUICK = settings(PROPERTY, max_examples=50)
MINUTE = timedelta(minutes=1)
ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute shift
    "Pacific/Auckland",  # southern hemisphere
    "America/Sao_Paulo",  # transitions at midnight (until 2019)
    "Asia/Tehran",  # transitions at midnight (until 2022)
    "Africa/Casablanca",  # several transitions a year
    "Asia/Kolkata",  # no DST
]


@cache
def transitions(name: str, year: int) -> tuple[datetime, ...]:
    """Instants (to the hour) near which *name*'s UTC offset changes in *year*."""
    zone = ZoneInfo(name)
    hours = [datetime(year, 1, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(366 * 24)]
    return tuple(
        b
        for a, b in pairwise(hours)
        if a.astimezone(zone).utcoffset() != b.astimezone(zone).utcoffset()
    )


@st.composite
def windows(draw: st.DrawFn) -> tuple[str, datetime, datetime]:
    """A zone and a ~40-hour UTC window, minute-aligned, usually around one of its transitions."""
    name = draw(st.sampled_from(ZONES))
    year = draw(st.integers(2015, 2030))
    near = transitions(name, year)
    if near and draw(st.integers(0, 3)) > 0:
        centre = draw(st.sampled_from(near))
    else:
        centre = datetime(year, 1, 1, tzinfo=UTC) + timedelta(days=draw(st.integers(0, 364)))
    start = centre - timedelta(minutes=draw(st.integers(60, 39 * 60)))
    return name, start, start + timedelta(hours=40)


minutes = st.frozensets(st.integers(0, 59), min_size=1, max_size=4)
hours = st.none() | st.frozensets(st.integers(0, 23), min_size=1, max_size=3)


def expression(mins: frozenset[int], hrs: frozenset[int] | None) -> str:
    hour_field = "*" if hrs is None else ",".join(map(str, sorted(hrs)))
    return f"{','.join(map(str, sorted(mins)))} {hour_field} * * *"


def oracle(
    name: str, mins: frozenset[int], hrs: frozenset[int] | None, lo: datetime, hi: datetime
) -> list[datetime]:
    """Ticks from a day before *lo* to two days after *hi* by the module's DST policy, found by
    reading the clock every minute.

    Every hour (hrs None): a tick whenever the clock shows a matching time. Named hours: one tick
    per matching wall time, as Airflow reads it: at the later of the instants that show it (a
    fold's second pass), or, for a wall time the clock jumped over, at the instant that shows it
    moved forward by the jump (equal instants are one tick).
    """
    zone = ZoneInfo(name)

    def reading(u: datetime) -> datetime:
        return u.astimezone(zone).replace(tzinfo=None)

    def matches(wall: datetime) -> bool:
        return wall.minute in mins and (hrs is None or wall.hour in hrs)

    clock = [lo - timedelta(days=1) + MINUTE * k for k in range((hi - lo) // MINUTE + 4320)]
    if hrs is None:
        return [u for u in clock if matches(reading(u))]
    shown: dict[datetime, list[datetime]] = {}
    jumps: list[tuple[datetime, datetime]] = []  # (wall before a jump, wall after it)
    for u in clock:
        wall = reading(u)
        shown.setdefault(wall, []).append(u)
        if u > clock[0] and wall - reading(u - MINUTE) > MINUTE:
            jumps.append((reading(u - MINUTE), wall))
    ticks: set[datetime] = set()
    wall, last = min(shown), max(shown)
    while wall <= last:
        if matches(wall) and wall in shown:
            ticks.add(shown[wall][-1])
        elif matches(wall):
            (gap,) = [b - a - MINUTE for a, b in jumps if a < wall < b]
            if wall + gap in shown:
                ticks.add(shown[wall + gap][0])
        wall += MINUTE
    return sorted(ticks)


@PROPERTY
@given(windows(), minutes, hours, st.data())
def test_cron_ticks_match_the_wall_clock_oracle(
    window: tuple[str, datetime, datetime],
    mins: frozenset[int],
    hrs: frozenset[int] | None,
    data: st.DataObject,
) -> None:
    name, lo, hi = window
    schedule = Schedule.parse(expression(mins, hrs), timezone=name)
    intervals = schedule.intervals_between(lo, hi)
    expected = oracle(name, mins, hrs, lo, hi)

    # the intervals of [lo, hi] start at its ticks and end at the tick after each
    starts = [x for x in expected if lo <= x <= hi]
    assert [iv.start for iv in intervals] == starts
    assert [iv.end for iv in intervals] == [expected[expected.index(x) + 1] for x in starts]
    assert all(iv.start < iv.end for iv in intervals)
    assert all(a.end == b.start for a, b in pairwise(intervals))  # contiguous

    # next_after and latest_complete agree with the oracle at a random instant: anywhere in the
    # window, or within 2 hours of a transition in it
    inside = [x for x in transitions(name, lo.year) + transitions(name, hi.year) if lo < x < hi]
    if inside and data.draw(st.integers(0, 2)) > 0:
        micros = data.draw(st.integers(-2 * 3600 * 10**6, 2 * 3600 * 10**6))
        t = data.draw(st.sampled_from(inside)) + timedelta(microseconds=micros)
    else:
        micros = data.draw(st.integers(0, (hi - lo) // timedelta(microseconds=1)))
        t = lo + timedelta(microseconds=micros)
    later = [x for x in expected if x > t]
    if later:
        nxt = schedule.next_after(t)
        assert nxt is not None
        assert nxt.end == later[0]
    earlier = [x for x in expected if x <= t]
    if len(earlier) >= 2:
        latest = schedule.latest_complete(t)
        assert latest is not None
        assert (latest.start, latest.end) == (earlier[-2], earlier[-1])


@QUICK
@given(windows(), minutes, hours)
def test_reverse_is_the_same_intervals_newest_first(
    window: tuple[str, datetime, datetime], mins: frozenset[int], hrs: frozenset[int] | None
) -> None:
    name, lo, hi = window
    schedule = Schedule.parse(expression(mins, hrs), timezone=name)
    forward = schedule.intervals_between(lo, hi)
    assert schedule.intervals_between(lo, hi, reverse=True) == forward[::-1]
    assert all(a.end < b.end for a, b in pairwise(forward))  # strictly increasing


@QUICK
@given(windows(), st.integers(0, 23), st.integers(0, 59))
def test_a_daily_cron_runs_once_on_every_local_day(
    window: tuple[str, datetime, datetime], hour: int, minute: int
) -> None:
    name, around, _ = window
    zone = ZoneInfo(name)
    schedule = Schedule.parse(f"{minute} {hour} * * *", timezone=name)
    lo, hi = around - timedelta(days=20), around + timedelta(days=20)
    days = [iv.end.astimezone(zone).date() for iv in schedule.intervals_between(lo, hi)]

    assert len(days) in (39, 40, 41)
    assert all((b - a).days == 1 for a, b in pairwise(days))  # every local day, once
