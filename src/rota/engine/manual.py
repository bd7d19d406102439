"""The logical date and data interval of a run started by hand (``rota run``, ``rota trigger``).

As in Airflow, a run started without a date has the trigger time as its logical date, and its
data interval is the one Airflow's ``infer_manual_data_interval`` gives: for a cron the last
interval complete at that time, for a timedelta the one ending then, and for a flow without a
clock schedule the instant itself. A run started *for* a date (``--logical-date D``, Airflow's
``dags test DAG D``) is the run the schedule makes for D: its data interval is the one that starts
at D, so D must be one of the schedule's logical dates.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from rota.errors import RunExists, UserError
from rota.model.schedule import FlowTiming
from rota.store.base import RunRecord, RunTiming, Store

_TINY: Final = timedelta(microseconds=1)
_DRAWS: Final = 3


def timing_at(flow: str, timing: FlowTiming, logical_date: datetime, run_type: str) -> RunTiming:
    """The timing of a run of *flow* for *logical_date*, as its schedule would make it.

    Raises:
        UserError: the flow has a clock schedule and *logical_date* is not one of its logical
            dates (the message names the nearest ones).
    """
    schedule = timing.schedule
    if schedule is None:
        return RunTiming(logical_date, logical_date, logical_date, run_type)
    interval = schedule.interval_at(logical_date)
    if interval is None:
        zone = ZoneInfo(schedule.timezone)
        before, after = (t.astimezone(zone).isoformat() for t in schedule.neighbours(logical_date))
        raise UserError(
            f"--logical-date {logical_date.astimezone(zone).isoformat()} is not a logical date of "
            f"flow {flow!r} ({timing.describe()}): the nearest are {before} and {after}"
        )
    return RunTiming(interval.start, interval.start, interval.end, run_type)


def timing_now(timing: FlowTiming, now: datetime, run_type: str) -> RunTiming:
    """The timing of a run started by hand at *now*: logical date *now*, and the data interval
    Airflow infers for a manual run."""
    if timing.schedule is None:
        return RunTiming(now, now, now, run_type)
    interval = timing.schedule.manual_interval(now)
    return RunTiming(now, interval.start, interval.end, run_type)


def create_manual(
    store: Store,
    create: Callable[[RunTiming], RunRecord],
    flow: str,
    timing: FlowTiming,
    now: Callable[[], datetime],
    *,
    logical_date: datetime | None,
    run_type: str,
) -> RunRecord:
    """Create a run started by hand through *create* (which writes to *store*): for
    *logical_date* if given, else for the time *now* returns.

    A run is unique per flow and logical date. Two runs started at one instant (a clock that does
    not move between them) get instants a microsecond apart.

    Raises:
        UserError: *logical_date* is not a logical date of the schedule, or the flow has a run for
            it already (the message says how to run it again).
    """
    if logical_date is not None:
        planned = timing_at(flow, timing, logical_date, run_type)
        when = planned.logical_date
        try:
            held = store.runs_for_dates(flow, when, when)  # refused before anything is written
            if held:
                raise RunExists("", held[0].run_id)
            return create(planned)
        except RunExists as err:
            raise UserError(
                f"flow {flow!r} has run {err.run_id} for {when.isoformat()} already: "
                f"`rota resume {err.run_id}` continues it, `rota clear {err.run_id} --task ID` "
                f"runs tasks of it again"
            ) from None
    taken: datetime | None = None
    for _ in range(_DRAWS):
        when = now() if taken is None else max(now(), taken + _TINY)
        try:
            return create(timing_now(timing, when, run_type))
        except RunExists:
            taken = when
    raise UserError(f"flow {flow!r} has runs for the last {_DRAWS} instants tried; try again")
