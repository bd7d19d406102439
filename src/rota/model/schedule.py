"""Time for the engine: the Clock protocol, and schedules as pure interval maths.

A :class:`Schedule` is a sorted set of *ticks* (instants). Two consecutive ticks bound an
:class:`Interval` ``[start, end)``; as in Airflow its ``logical_date`` is ``start``, and the run for
it is due at ``end``, once its data is complete. All instants the schedule returns are aware
datetimes in UTC; the time zone only says how the cron expression reads the wall clock.

Cron schedules (5 fields, or a preset: ``@hourly @daily @weekly @monthly @yearly``) are evaluated
in the local wall time of ``timezone``, so ``"0 3 * * *"`` in Europe/Berlin means 03:00 local all
year. ``@once`` is not a schedule here: a one-off run is started by hand.

DST policy. A cron that names its hours (hour field other than ``*``) runs once for each wall time
it matches, when the wall clock first reaches or jumps over it: a wall time that does not exist
(the spring-forward gap) runs at the first instant after the gap, and a wall time that exists
twice (the autumn fold) runs at its first occurrence only, so a daily cron runs exactly once per
local day, every day (wall times that land on one instant make one tick). A cron whose hour field
is ``*`` (every hour) runs whenever the wall clock shows a matching time: the skipped hour has no
ticks and the repeated hour has them twice, so ``@hourly`` has 23 intervals on the spring-forward
day and 25 on the fall-back day, each one hour of elapsed time (Airflow does the same).

Timedelta schedules are exact elapsed durations in UTC, whatever the zone: ticks are
``anchor + k * every`` with the anchor at ``start_date`` (the Unix epoch if there is none), so a
6-hour schedule stays 6 hours apart across DST changes.

Bounds. ``start_date`` and ``end_date`` (inclusive) bound the ticks: only intervals lying wholly
inside ``[start_date, end_date]`` exist. A naive bound is read as wall time in ``timezone`` (by the
policy above); every other datetime passed in must be timezone-aware.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from rota.errors import PolicyError
from rota.model.ticks import count_cron_ticks


class Clock(Protocol):
    """Where the engine reads the time; tests inject a fake one."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going back."""


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


PRESETS: Final[dict[str, str]] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TINY: Final = timedelta(microseconds=1)


def _aware_utc(name: str, value: datetime) -> datetime:
    """*value* in UTC; PolicyError if it is not an aware datetime."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise PolicyError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Interval:
    """One schedule interval ``[start, end)``; its run is due at ``end``.

    Attributes:
        start: first instant of the interval's data (aware; normalised to UTC).
        end: first instant after it (aware; normalised to UTC); ``start < end``.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        # normalised to UTC: Python compares two datetimes of one zone by wall time, fold ignored
        object.__setattr__(self, "start", _aware_utc("Interval.start", self.start))
        object.__setattr__(self, "end", _aware_utc("Interval.end", self.end))
        if not self.start < self.end:
            raise PolicyError(f"interval start must precede its end: {self.start}..{self.end}")

    @property
    def logical_date(self) -> datetime:
        """The date that names the run: the interval's start, as in Airflow."""
        return self.start


def _occurrences(wall: datetime, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    """The first and second UTC instants at which the wall clock shows *wall* (equal unless in a
    fold), or None if *wall* falls in a gap."""
    # PEP 495: fold=0 reads a wall time with the offset from before a transition, fold=1 with the
    # one after; in a fold that puts fold=0 first, in a gap it puts fold=0 last.
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return (first, second) if first <= second else None


def _gap_end(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant after the gap that swallows *wall*: the transition itself."""
    lo = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)  # before the transition
    hi = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # after it
    after = hi.astimezone(zone).utcoffset()
    while hi - lo > _TINY:  # invariant: lo has the old offset, hi the new one
        mid = lo + (hi - lo) // 2
        if mid.astimezone(zone).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return hi


def localize(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of naive *wall* in *zone*: a gap's wall time maps to the gap's end, a fold's
    to its first occurrence (the module's DST policy)."""
    both = _occurrences(wall, zone)
    return both[0] if both is not None else _gap_end(wall, zone)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a flow runs: a cron expression in a time zone, or a fixed timedelta.

    Build one with :meth:`parse`. Exactly one of ``cron`` and ``every`` is set.

    Attributes:
        cron: a 5-field cron expression (presets are expanded), read in ``timezone``'s wall time.
        every: a positive fixed interval, exact in elapsed time.
        timezone: an IANA zone name.
        start_date: first possible tick (inclusive), UTC; None for no lower bound.
        end_date: last possible tick (inclusive), UTC; None for no upper bound.

    Raises:
        PolicyError: on an unknown zone, a bad cron, a non-positive ``every``, or bad bounds.
    """

    cron: str | None = None
    every: timedelta | None = None
    timezone: str = "UTC"
    start_date: datetime | None = None
    end_date: datetime | None = None
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _every_hour: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise PolicyError("a schedule needs exactly one of a cron expression and a timedelta")
        object.__setattr__(self, "_zone", _zone(self.timezone))
        every_hour = False
        if self.cron is not None:
            every_hour = _check_cron(self.cron)
        elif not isinstance(self.every, timedelta) or self.every <= timedelta(0):
            raise PolicyError(f"schedule interval must be a positive timedelta, got {self.every!r}")
        object.__setattr__(self, "_every_hour", every_hour)
        for name in ("start_date", "end_date"):
            value = getattr(self, name)
            if isinstance(value, datetime) and value.utcoffset() is None:
                value = localize(value, self._zone)
            if value is not None:
                object.__setattr__(self, name, _aware_utc(name, value))
        if self.start_date and self.end_date and self.end_date <= self.start_date:
            raise PolicyError(
                f"schedule end_date {self.end_date} must be after start_date {self.start_date}"
            )

    @classmethod
    def parse(
        cls,
        value: str | timedelta,
        *,
        timezone: str = "UTC",
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> Schedule:
        """A schedule from what ``@flow(schedule=...)`` accepts.

        Args:
            value: a 5-field cron expression, a preset (``@hourly`` ...), or a timedelta.
            timezone: IANA zone the cron expression (and naive bounds) are read in.
            start_date: first possible tick; naive means wall time in ``timezone``.
            end_date: last possible tick; naive means wall time in ``timezone``.

        Raises:
            PolicyError: if *value* or any argument is invalid.
        """
        if isinstance(value, timedelta):
            return cls(every=value, timezone=timezone, start_date=start_date, end_date=end_date)
        if not isinstance(value, str):
            raise PolicyError(
                f"schedule must be a cron expression, a preset or a timedelta, got {value!r}"
            )
        expression = PRESETS.get(value.strip().lower(), value.strip())
        return cls(cron=expression, timezone=timezone, start_date=start_date, end_date=end_date)

    def localize(self, wall: datetime) -> datetime:
        """The UTC instant of *wall*: naive means wall time in ``timezone`` (DST policy above)."""
        if wall.utcoffset() is None:
            return localize(wall, self._zone)
        return wall.astimezone(UTC)

    # --- public interval maths ---------------------------------------------------------------

    def next_after(self, dt: datetime) -> Interval | None:
        """The first interval that ends strictly after *dt* (the next run to fall due), or None
        when ``end_date`` allows no more."""
        end = self._after(_aware_utc("dt", dt))
        if self.start_date is not None:  # the first interval ends at the second tick in bounds
            end = max(end, self._after(self._after(self.start_date - _TINY)))
        if self.end_date is not None and end > self.end_date:
            return None
        return Interval(self._at_or_before(end - _TINY), end)

    def intervals_between(
        self, start: datetime, end: datetime, *, reverse: bool = False
    ) -> list[Interval]:
        """Every interval whose end lies in ``(start, end]``, oldest first (newest if *reverse*):
        what a backfill of that range runs."""
        limit = _aware_utc("end", end)
        found: list[Interval] = []
        current = self.next_after(start)
        while current is not None and current.end <= limit:
            found.append(current)
            following = self._after(current.end)
            if self.end_date is not None and following > self.end_date:
                break
            current = Interval(current.end, following)
        if reverse:
            found.reverse()
        return found

    def count_between(self, start: datetime, end: datetime) -> int:
        """``len(self.intervals_between(start, end))``, without making the intervals: arithmetic
        for a timedelta, and for a cron all but a short walk around each DST change."""
        lo, hi = _aware_utc("start", start), _aware_utc("end", end)
        if self.start_date is not None:  # the first interval ends at the second tick in bounds
            lo = max(lo, self._after(self.start_date - _TINY))
        if self.end_date is not None:
            hi = min(hi, self.end_date)
        if hi <= lo:
            return 0
        if self.every is not None:
            anchor = self.start_date or _EPOCH
            return (hi - anchor) // self.every - (lo - anchor) // self.every
        assert self.cron is not None
        return count_cron_ticks(
            self.cron, self._zone, self._after, lo, hi, every_hour=self._every_hour
        )

    def latest_complete(self, now: datetime) -> Interval | None:
        """The interval that fell due last at or before *now*, or None if none has yet."""
        limit = _aware_utc("now", now)
        if self.end_date is not None:
            limit = min(limit, self.end_date)
        end = self._at_or_before(limit)
        start = self._at_or_before(end - _TINY)
        if self.start_date is not None and start < self.start_date:
            return None
        return Interval(start, end)

    def due(
        self, now: datetime, last_logical_date: datetime | None, *, catchup: bool
    ) -> list[Interval]:
        """The intervals a scheduler should create runs for at *now*, oldest first.

        Args:
            now: the current time (aware).
            last_logical_date: the logical date of the newest run already created, or None.
            catchup: True to return every complete interval after the last run (or since
                ``start_date`` when there is none); False for only the latest complete one.
                Without a last run or a ``start_date`` there is no history to catch up on, and
                only the latest interval is returned.

        Returns:
            Complete intervals with a logical date after *last_logical_date*; empty if none.
        """
        latest = self.latest_complete(now)
        if latest is None:
            return []
        if last_logical_date is None:
            if not catchup or self.start_date is None:
                return [latest]
            return self.intervals_between(self.start_date, latest.end)
        last = _aware_utc("last_logical_date", last_logical_date)
        if latest.start <= last:
            return []
        if not catchup:
            return [latest]
        return self.intervals_between(self._after(last), latest.end)

    # --- ticks, unbounded --------------------------------------------------------------------

    def _after(self, t: datetime) -> datetime:
        """The first tick strictly after *t*, ignoring the bounds."""
        if self.every is not None:
            anchor = self.start_date or _EPOCH
            return anchor + ((t - anchor) // self.every + 1) * self.every
        wall, drop = self._reading(t)
        tick = self._scan(t, wall, fold=0, forward=True)
        if self._every_hour:  # the second pass of a fold may bring an earlier tick
            tick = min(tick, self._scan(t, wall - drop, fold=1, forward=True))
        return tick

    def _at_or_before(self, t: datetime) -> datetime:
        """The last tick at or before *t*, ignoring the bounds."""
        if self.every is not None:
            anchor = self.start_date or _EPOCH
            return anchor + ((t - anchor) // self.every) * self.every
        wall, drop = self._reading(t)
        upper = wall + drop + _TINY  # croniter's get_prev is exclusive
        tick = self._scan(t, upper, fold=0, forward=False)
        if self._every_hour:
            tick = max(tick, self._scan(t, upper, fold=1, forward=False))
        return tick

    def _reading(self, t: datetime) -> tuple[datetime, timedelta]:
        """The wall clock at *t*, and the length of the fold it is in (zero outside folds)."""
        wall = t.astimezone(self._zone).replace(tzinfo=None, fold=0)
        both = _occurrences(wall, self._zone)
        assert both is not None  # a wall time the clock shows exists
        return wall, both[1] - both[0]

    def _scan(self, t: datetime, wall: datetime, *, fold: int, forward: bool) -> datetime:
        """Walk the cron's wall times from *wall* and return the first tick past *t*.

        Every wall time maps to at most one instant (its *fold*-th occurrence, or the gap's end),
        and that map is monotonic, so the first instant found past *t* is the answer.
        """
        assert self.cron is not None  # only cron schedules scan
        walker = croniter(self.cron, wall)
        while True:
            candidate = walker.get_next(datetime) if forward else walker.get_prev(datetime)
            tick = self._instant(candidate, fold)
            if tick is not None and (tick > t if forward else tick <= t):
                return tick

    def _instant(self, wall: datetime, fold: int) -> datetime | None:
        """When the cron's *wall* time runs, by the DST policy; None if it does not."""
        both = _occurrences(wall, self._zone)
        if both is not None:
            return both[fold]
        return None if self._every_hour else _gap_end(wall, self._zone)


@dataclass(frozen=True, slots=True)
class FlowTiming:
    """When a flow runs: on a clock schedule, on datasets, or only when started by hand.

    Attributes:
        schedule: the cron or timedelta schedule, if any.
        datasets: datasets the flow waits for (empty if it is not scheduled on datasets).
        catchup: create runs for every missed interval after downtime (else the latest only).
        max_active_runs: the most runs of the flow queued or running at once.
        timezone: the zone the schedule reads wall time in (also for manual runs' dates).
    """

    schedule: Schedule | None = None
    datasets: tuple[Any, ...] = ()
    catchup: bool = False
    max_active_runs: int = 16
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.max_active_runs < 1:
            raise PolicyError(f"max_active_runs must be at least 1, got {self.max_active_runs}")

    def describe(self) -> str:
        """One line for listings: ``0 3 * * * (Europe/Berlin)``, ``every 6:00:00``, ..."""
        if self.schedule is not None and self.schedule.cron is not None:
            return f"{self.schedule.cron} ({self.schedule.timezone})"
        if self.schedule is not None:
            return f"every {self.schedule.every}"
        if self.datasets:
            return "on " + ", ".join(d.uri for d in self.datasets)
        return "manual"


def _zone(name: str) -> ZoneInfo:
    """The zone called *name*; PolicyError if there is none."""
    if not isinstance(name, str) or not name:
        raise PolicyError(f"timezone must be an IANA zone name, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError(f"unknown timezone {name!r}") from None


def _check_cron(expression: str) -> bool:
    """Validate a 5-field cron expression; return whether it fires in every hour of the day."""
    if not isinstance(expression, str) or len(expression.split()) != 5:
        raise PolicyError(
            f"cron expression must have 5 fields (minute hour day month weekday) or be one of "
            f"{', '.join(PRESETS)}, got {expression!r}"
        )
    try:
        walker = croniter(expression, datetime(2000, 1, 1))
        walker.get_next(datetime)
    except (CroniterError, ValueError, TypeError, KeyError) as err:
        raise PolicyError(f"bad cron expression {expression!r}: {err}") from None
    hours = walker.expanded[1]
    return hours == ["*"] or len(set(hours)) == 24
