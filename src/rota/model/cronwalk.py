"""The ticks of a cron expression read in a zone's wall time: the first after an instant, the last
at or before one, by the DST policy of :mod:`rota.model.schedule`.

A cron that names its hours ticks at each matching wall time read as Airflow reads it
(:func:`rota.model.walltime.resolve`: a fold's second occurrence, a gap's wall time moved forward
by the gap). A cron whose hour field is ``*`` ticks whenever the clock shows a matching time: on
both passes of a fold, never in a gap (Airflow steps such a cron by elapsed time, which comes to
the same instants).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from rota.errors import PolicyError
from rota.model.walltime import jump_before, occurrences, reading, resolve

PRESETS: Final[dict[str, str]] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_TINY: Final = timedelta(microseconds=1)


class CronWalk:
    """Walks *cron*'s wall times in *zone* to find its ticks (aware UTC instants).

    Args:
        cron: a valid 5-field cron expression.
        zone: the zone whose wall clock it reads.
        every_hour: whether its hour field matches every hour (``*``).
    """

    __slots__ = ("_cron", "_every_hour", "_zone")

    def __init__(self, cron: str, zone: ZoneInfo, *, every_hour: bool) -> None:
        self._cron = cron
        self._zone = zone
        self._every_hour = every_hour

    @classmethod
    def parse(cls, expression: str, zone: ZoneInfo) -> CronWalk:
        """The walk of a 5-field cron *expression* (presets already expanded) in *zone*.

        Raises:
            PolicyError: not a valid 5-field cron expression.
        """
        if not isinstance(expression, str) or len(expression.split()) != 5:
            raise PolicyError(
                f"cron expression must have 5 fields (minute hour day month weekday) or be one of "
                f"{', '.join(PRESETS)}, got {expression!r}"
            )
        from croniter import CroniterError, croniter  # here: a flow without a cron never loads it

        try:
            walker = croniter(expression, datetime(2000, 1, 1))
            walker.get_next(datetime)
        except (CroniterError, ValueError, TypeError, KeyError) as err:
            raise PolicyError(f"bad cron expression {expression!r}: {err}") from None
        hours = walker.expanded[1]
        return cls(expression, zone, every_hour=hours == ["*"] or len(set(hours)) == 24)

    @property
    def every_hour(self) -> bool:
        """Whether the cron's hour field matches every hour."""
        return self._every_hour

    def after(self, t: datetime) -> datetime:
        """The first tick strictly after *t*."""
        wall, drop = reading(t, self._zone)
        if self._every_hour:  # one pass over each reading of the wall clock
            tick = self._scan(t, wall, fold=0, forward=True)
            return min(tick, self._scan(t, wall - drop, fold=1, forward=True))
        # A named hour ticks at its second occurrence in a fold, and a gap moves wall times
        # forward: wall times up to a fold's length (or a gap's) before *t*'s may tick after it.
        return self._scan(t, wall - max(drop, jump_before(t, self._zone)), fold=1, forward=True)

    def at_or_before(self, t: datetime) -> datetime:
        """The last tick at or before *t*."""
        wall, drop = reading(t, self._zone)
        upper = wall + drop + _TINY  # croniter's get_prev is exclusive
        tick = self._scan(t, upper, fold=0, forward=False)
        if self._every_hour:
            tick = max(tick, self._scan(t, upper, fold=1, forward=False))
        return tick

    def _scan(self, t: datetime, wall: datetime, *, fold: int, forward: bool) -> datetime:
        """Walk the cron's wall times from *wall* and return the first tick past *t* (after it, or
        at or before it when going back).

        Wall times map to instants in order, except near a gap, where one in the gap lands after
        the wall times that follow the gap; so once a tick near a gap is found, the walk goes on for
        the gap's length of wall time and keeps the nearest tick.
        """
        from croniter import croniter

        walker = croniter(self._cron, wall)
        step = walker.get_next if forward else walker.get_prev
        found: datetime | None = None
        stop = wall
        while True:
            candidate: datetime = step(datetime)
            if found is not None and (candidate >= stop if forward else candidate <= stop):
                return found
            tick = self._instant(candidate, fold)
            if tick is None or not (tick > t if forward else tick <= t):
                continue
            if found is None:
                jump = jump_before(tick, self._zone)
                if not jump or self._every_hour:
                    return tick
                found, stop = tick, candidate + jump if forward else candidate - jump
            else:
                found = min(found, tick) if forward else max(found, tick)

    def _instant(self, wall: datetime, fold: int) -> datetime | None:
        """When the cron's *wall* time ticks, by the DST policy; None if it does not."""
        if not self._every_hour:
            return resolve(wall, self._zone)
        both = occurrences(wall, self._zone)
        return None if both is None else both[fold]
