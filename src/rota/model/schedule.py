"""Time for the engine: the Clock protocol, and schedules as pure interval maths.

A :class:`Schedule` is a sorted set of *ticks* (instants). Two consecutive ticks bound an
:class:`Interval` ``[start, end)``; as in Airflow its ``logical_date`` is ``start``, and the run for
it is due at ``end``, once its data is complete. All instants the schedule returns are aware
datetimes in UTC; the time zone only says how the cron expression reads the wall clock.

Cron schedules (5 fields, or a preset: ``@hourly @daily @weekly @monthly @yearly``) are evaluated
in the local wall time of ``timezone``, so ``"0 3 * * *"`` in Europe/Berlin means 03:00 local all
year. ``@once`` is not a schedule here: a one-off run is started by hand.

DST policy: Airflow's ``CronDataIntervalTimetable``. A cron that names its hours (hour field other
than ``*``) ticks at each wall time it matches, read as Airflow reads it
(:mod:`rota.model.walltime`): a wall time that exists twice (the autumn fold) ticks at its *second*
occurrence, and one that does not exist (the spring-forward gap) moves forward by the gap's length.
So ``0 2 * * *`` in Europe/Zurich has the interval ``[2023-10-28 00:00Z, 2023-10-29 01:00Z)``, and
``30 2 * * *`` in Europe/Berlin ticks at 03:30 CEST on 2026-03-29. A daily cron still runs exactly
once per local day (wall times that land on one instant make one tick). A cron whose hour field is
``*`` (every hour) ticks whenever the wall clock shows a matching time: the skipped hour has no
ticks and the repeated hour has them twice, so ``@hourly`` has 23 intervals on the spring-forward
day and 25 on the fall-back day, each one hour of elapsed time (Airflow does the same).

Timedelta schedules are exact elapsed durations in UTC, whatever the zone: ticks are
``anchor + k * every`` with the anchor at ``start_date`` (the Unix epoch if there is none), so a
6-hour schedule stays 6 hours apart across DST changes.

Ranges, as Airflow's backfill makes them (``iter_dagrun_infos_between``): the intervals of a range
``[start, end]`` are those whose *logical date* lies in it. A start between two ticks moves forward
to the next tick, and ``end`` is the latest logical date included, so ``2026-03-01`` to
``2026-03-30`` of a daily schedule is 30 intervals.

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

from rota.errors import PolicyError
from rota.model.cronwalk import PRESETS, CronWalk
from rota.model.ticks import count_cron_ticks
from rota.model.walltime import resolve


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
    _walk: CronWalk | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise PolicyError("a schedule needs exactly one of a cron expression and a timedelta")
        object.__setattr__(self, "_zone", _zone(self.timezone))
        if self.cron is not None:
            object.__setattr__(self, "_walk", CronWalk.parse(self.cron, self._zone))
        elif not isinstance(self.every, timedelta) or self.every <= timedelta(0):
            raise PolicyError(f"schedule interval must be a positive timedelta, got {self.every!r}")
        for name in ("start_date", "end_date"):
            value = getattr(self, name)
            if isinstance(value, datetime) and value.utcoffset() is None:
                value = resolve(value, self._zone)
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
            return resolve(wall, self._zone)
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
        """Every interval whose logical date lies in ``[start, end]``, oldest first (newest if
        *reverse*): what a backfill of that range runs. A *start* between two ticks moves forward
        to the next tick; *end* is the latest logical date included (Airflow's
        ``iter_dagrun_infos_between``)."""
        limit = _aware_utc("end", end)
        found: list[Interval] = []
        tick = self._first_from(_aware_utc("start", start))
        while tick <= limit:
            following = self._after(tick)
            if self.end_date is not None and following > self.end_date:
                break
            found.append(Interval(tick, following))
            tick = following
        if reverse:
            found.reverse()
        return found

    def count_between(self, start: datetime, end: datetime) -> int:
        """``len(self.intervals_between(start, end))``, without making the intervals: arithmetic
        for a timedelta, and for a cron all but a short walk around each DST change."""
        lo, hi = self._first_from(_aware_utc("start", start)), _aware_utc("end", end)
        if self.end_date is not None:
            hi = min(hi, self._last_start())
        if hi < lo:
            return 0
        if self.every is not None:
            anchor = self.start_date or _EPOCH
            return (hi - anchor) // self.every - (lo - _TINY - anchor) // self.every
        assert self.cron is not None
        return count_cron_ticks(self.cron, self._zone, self._after, lo - _TINY, hi)

    def why_empty(self, start: datetime, end: datetime) -> str:
        """Why ``[start, end]`` holds no interval, in one line for people (dates in the zone)."""
        lo, hi = _aware_utc("start", start), _aware_utc("end", end)
        if self.start_date is not None and hi < self._first_from(self.start_date):
            return (
                f"the range ends before the schedule's start_date {self._show(self.start_date)}: "
                f"its first logical date is {self._show(self._first_from(self.start_date))}"
            )
        if self.end_date is not None and self._last_start() < lo:
            return (
                f"the range begins after the last interval that ends by the schedule's end_date "
                f"{self._show(self.end_date)} (logical date {self._show(self._last_start())})"
            )
        return (
            f"no logical date of the schedule lies in [{self._show(lo)}, {self._show(hi)}]: the "
            f"one before is {self._show(self._at_or_before(lo))}, the next "
            f"{self._show(self._first_from(lo))}"
        )

    def interval_at(self, logical_date: datetime) -> Interval | None:
        """The interval whose logical date is *logical_date* (the one a scheduled run of that
        date covers), whatever the bounds; None if no tick falls on it."""
        t = _aware_utc("logical_date", logical_date)
        if self._after(t - _TINY) != t:
            return None
        return Interval(t, self._after(t))

    def neighbours(self, t: datetime) -> tuple[datetime, datetime]:
        """The last tick at or before *t* and the first after it, whatever the bounds."""
        t = _aware_utc("t", t)
        return self._at_or_before(t), self._after(t)

    def manual_interval(self, run_after: datetime) -> Interval:
        """The data interval of a run started by hand at *run_after*, as Airflow's
        ``infer_manual_data_interval`` makes it: for a cron the last interval complete at
        *run_after*, for a timedelta the one ending at *run_after*. The bounds do not apply."""
        t = _aware_utc("run_after", run_after)
        if self.every is not None:
            return Interval(t - self.every, t)
        end = self._at_or_before(t)
        return Interval(self._at_or_before(end - _TINY), end)

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
            return self.intervals_between(self.start_date, latest.start)
        last = _aware_utc("last_logical_date", last_logical_date)
        if latest.start <= last:
            return []
        if not catchup:
            return [latest]
        return self.intervals_between(self._after(last), latest.start)

    # --- ticks ------------------------------------------------------------------------------

    def _first_from(self, t: datetime) -> datetime:
        """The first tick at or after *t* and at or after ``start_date``."""
        first = self._after(t - _TINY)
        if self.start_date is not None:
            first = max(first, self._after(self.start_date - _TINY))
        return first

    def _last_start(self) -> datetime:
        """The logical date of the last interval that ends by ``end_date`` (which is set)."""
        assert self.end_date is not None
        return self._at_or_before(self._at_or_before(self.end_date) - _TINY)

    def _show(self, t: datetime) -> str:
        return t.astimezone(self._zone).isoformat()

    # --- ticks, unbounded --------------------------------------------------------------------

    def _after(self, t: datetime) -> datetime:
        """The first tick strictly after *t*, ignoring the bounds."""
        if self.every is not None:
            anchor = self.start_date or _EPOCH
            return anchor + ((t - anchor) // self.every + 1) * self.every
        assert self._walk is not None  # a cron schedule has its walk
        return self._walk.after(t)

    def _at_or_before(self, t: datetime) -> datetime:
        """The last tick at or before *t*, ignoring the bounds."""
        if self.every is not None:
            anchor = self.start_date or _EPOCH
            return anchor + ((t - anchor) // self.every) * self.every
        assert self._walk is not None
        return self._walk.at_or_before(t)


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
