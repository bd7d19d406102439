"""Wall-clock times in a zone with DST, read the way Airflow reads a cron's wall times.

A naive wall time names one instant, except around a change of the zone's UTC offset: in the
autumn *fold* (the clock goes back) it names two, and in the spring *gap* (the clock jumps forward)
none. Airflow makes each wall time aware with ``fold=1`` and pendulum's post-transition rule:

- a wall time in a fold names its **second** occurrence (the one with the offset after the change):
  ``02:00`` in Europe/Zurich on 2023-10-29 is 01:00 UTC, not 00:00 UTC;
- a wall time in a gap moves **forward by the gap's length**: ``02:30`` in Europe/Berlin on
  2026-03-29, where the clock jumps from 02:00 to 03:00, is 03:30 CEST (01:30 UTC).

In PEP 495 terms that is the later of the two readings, ``fold=0`` and ``fold=1``: in a fold the
``fold=1`` one, in a gap the ``fold=0`` one (the wall time read with the offset before the gap).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

_DAY: Final = timedelta(days=1)


def occurrences(wall: datetime, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    """The first and second UTC instants at which the clock in *zone* shows naive *wall* (equal
    unless *wall* is in a fold), or None if *wall* falls in a gap."""
    # PEP 495: fold=0 reads a wall time with the offset from before a transition, fold=1 with the
    # one after; in a fold that puts fold=0 first, in a gap it puts fold=0 last.
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return (first, second) if first <= second else None


def resolve(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant naive *wall* names in *zone*, as Airflow reads it: a fold's second
    occurrence, or for a wall time in a gap the instant the gap's length after it."""
    a = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    b = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return max(a, b)


def reading(t: datetime, zone: ZoneInfo) -> tuple[datetime, timedelta]:
    """The naive wall clock in *zone* at instant *t*, and the length of the fold that wall time is
    in (zero outside folds)."""
    wall = t.astimezone(zone).replace(tzinfo=None, fold=0)
    both = occurrences(wall, zone)
    assert both is not None  # a wall time the clock shows exists
    return wall, both[1] - both[0]


def jump_before(t: datetime, zone: ZoneInfo) -> timedelta:
    """How far *zone*'s clock jumped forward in the day up to instant *t* (zero if it did not).

    Near such a gap, wall times do not map to instants in order: a wall time in the gap moves
    forward past the wall times just after it, so a walk over wall times must look this much
    further to find the earliest (or latest) instant.
    """
    now = t.astimezone(zone).utcoffset()
    before = (t - _DAY).astimezone(zone).utcoffset()
    assert now is not None and before is not None  # a ZoneInfo always has an offset
    return max(now - before, timedelta(0))
