"""Counting a cron schedule's ticks in a range without walking them one by one.

Walking a cron tick by tick costs a croniter step each; a backfill asked for ten years of a
minutely schedule has five million of them. Here the count is arithmetic: between two changes of
the zone's UTC offset every matching wall time is one tick, so a stretch counts as its matching
days times the wall times per day, plus those of its partial days. Only a short window around each
offset change, where the DST policy moves, merges or repeats ticks (``rota.model.schedule``), is
walked tick by tick, with the schedule's own ``after`` function, so the count is exact.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

_MINUTE: Final = timedelta(minutes=1)
_STEP: Final = timedelta(hours=6)  # offset changes are months apart: this finds each of them
_SLACK: Final = timedelta(minutes=2)


def count_cron_ticks(
    cron: str,
    zone: ZoneInfo,
    after: Callable[[datetime], datetime],
    lo: datetime,
    hi: datetime,
) -> int:
    """The number of ticks *t* with ``lo < t <= hi`` of the 5-field *cron* read in *zone*.

    Args:
        cron: the expression (its minute and hour fields give the wall times of a matching day).
        zone: the zone whose wall clock the expression reads.
        after: the schedule's "first tick strictly after" function, which applies the DST policy
            (walked only near offset changes).
        lo: aware UTC lower bound, excluded.
        hi: aware UTC upper bound, included.
    """
    if hi <= lo:
        return 0
    day = _DayPattern(cron, zone, lo, hi)
    total = 0
    cursor = lo
    for change, delta in _offset_changes(zone, lo, hi):
        # Where the policy departs from "one tick per matching wall time at its offset": after a
        # gap (its wall times move forward by its length, or vanish), and over a repeated stretch
        # (whose first pass has no ticks of a named hour): a change's length either side of it.
        reach = abs(delta) + _SLACK
        window_lo = min(max(cursor, change - reach), hi)
        window_hi = min(max(window_lo, change + reach), hi)
        total += day.count(cursor, window_lo) + _walk(after, window_lo, window_hi)
        cursor = window_hi
    return total + day.count(cursor, hi)


def _walk(after: Callable[[datetime], datetime], lo: datetime, hi: datetime) -> int:
    count = 0
    tick = after(lo)
    while tick <= hi:
        count += 1
        tick = after(tick)
    return count


def _offset_changes(
    zone: ZoneInfo, lo: datetime, hi: datetime
) -> Iterator[tuple[datetime, timedelta]]:
    """Each instant near ``(lo, hi)`` where *zone*'s offset changes, and the change."""
    t = lo - timedelta(days=1)
    end = hi + timedelta(days=1)
    before = _offset(zone, t)
    while t < end:
        nxt = t + _STEP
        now = _offset(zone, nxt)
        if now != before:
            yield _change_in(zone, t, nxt, before), now - before
            before = now
        t = nxt


def _change_in(zone: ZoneInfo, a: datetime, b: datetime, before: timedelta) -> datetime:
    """The first instant in ``(a, b]`` whose offset differs from *before* (to the microsecond)."""
    while b - a > timedelta(microseconds=1):
        mid = a + (b - a) // 2
        if _offset(zone, mid) == before:
            a = mid
        else:
            b = mid
    return b


def _offset(zone: ZoneInfo, t: datetime) -> timedelta:
    offset = t.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


class _DayPattern:
    """The cron's wall times as (matching days) x (minutes of such a day): counted, not walked."""

    def __init__(self, cron: str, zone: ZoneInfo, lo: datetime, hi: datetime) -> None:
        fields = cron.split()
        self._zone = zone
        from croniter import croniter  # here: a flow without a cron never loads it

        probe = croniter(cron, datetime(2000, 1, 1))
        minutes, hours = probe.expanded[0], probe.expanded[1]
        mins = range(60) if minutes == ["*"] else sorted(int(m) for m in minutes)
        hrs = range(24) if hours == ["*"] else sorted(int(h) for h in hours)
        self._minutes = sorted({h * 60 + m for h in hrs for m in mins})
        first = (lo - timedelta(days=2)).date()
        last = (hi + timedelta(days=2)).date()
        self._days = list(_matching_days(" ".join(["0", "0", *fields[2:]]), first, last))

    def count(self, a: datetime, b: datetime) -> int:
        """Matching wall times ``W`` with ``a < instant(W) <= b``, for a stretch of one offset."""
        if b <= a:
            return 0
        offset = _offset(self._zone, a + (b - a) / 2)
        return self._upto(b + offset) - self._upto(a + offset)

    def _upto(self, wall: datetime) -> int:
        """Matching wall times at or before *wall* (an instant plus its offset, read naively)."""
        naive = wall.astimezone(UTC).replace(tzinfo=None)
        today = naive.date().toordinal()
        whole_days = bisect.bisect_left(self._days, today)
        count = whole_days * len(self._minutes)
        if whole_days < len(self._days) and self._days[whole_days] == today:
            count += bisect.bisect_right(self._minutes, naive.hour * 60 + naive.minute)
        return count


def _matching_days(day_cron: str, first: date, last: date) -> Iterator[int]:
    """Ordinals of the days in ``[first, last]`` that *day_cron* (``0 0 <dom> <month> <dow>``)
    fires on."""
    from croniter import croniter

    walker = croniter(day_cron, datetime.combine(first, datetime.min.time()) - _MINUTE)
    while True:
        fired = walker.get_next(datetime).date()
        if fired > last:
            return
        yield fired.toordinal()
