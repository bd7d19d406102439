"""SQL for the scheduler: runs by logical date, runs by state, and the scheduler's lock.

Functions take a connection inside the caller's transaction; :class:`~rota.store.sql.SqlStore`
wraps each in one method.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update

from rota.model.states import RunState
from rota.store.base import RunRecord
from rota.store.rows import read_records
from rota.store.tables import runs, scheduler_locks
from rota.store.writes import run_record, to_utc

_r = runs.c
_l = scheduler_locks.c


def runs_for_dates(
    conn: Connection, flow: str, start: datetime | None, end: datetime | None
) -> list[RunRecord]:
    """Runs of *flow* with a logical date in ``[start, end]``, oldest logical date first."""
    query = select(runs).where(_r.flow == flow, _r.logical_date.is_not(None))
    if start is not None:
        query = query.where(_r.logical_date >= to_utc(start))
    if end is not None:
        query = query.where(_r.logical_date <= to_utc(end))
    return read_records(conn, query.order_by(_r.logical_date), _r.run_id, run_record, kind="run")


def run_for_date(conn: Connection, flow: str, logical_date: datetime) -> RunRecord | None:
    """The run of *flow* for *logical_date*, if there is one."""
    query = select(runs).where(_r.flow == flow, _r.logical_date == to_utc(logical_date))
    row = conn.execute(query).one_or_none()
    return None if row is None else run_record(row._mapping)


def latest_logical_date(conn: Connection, flow: str, run_type: str) -> datetime | None:
    """The newest logical date among *flow*'s runs of *run_type*."""
    query = (
        select(_r.logical_date)
        .where(_r.flow == flow, _r.run_type == run_type, _r.logical_date.is_not(None))
        .order_by(_r.logical_date.desc())
        .limit(1)
    )
    found: datetime | None = conn.execute(query).scalar()
    return found


def runs_in_states(
    conn: Connection, states: Sequence[RunState], flow: str | None
) -> list[RunRecord]:
    """Runs in one of *states*, oldest first."""
    query = select(runs).where(_r.state.in_([s.value for s in states]))
    if flow is not None:
        query = query.where(_r.flow == flow)
    query = query.order_by(_r.created_at, _r.run_id)
    return read_records(conn, query, _r.run_id, run_record, kind="run")


def take_lock(
    conn: Connection, name: str, holder: str, at: datetime, stale_after: float
) -> str | None:
    """Take or keep lock *name* for *holder* (see Store.take_lock); None when held."""
    row = conn.execute(select(_l.holder, _l.heartbeat_at).where(_l.name == name)).one_or_none()
    now = to_utc(at)
    if row is None:
        conn.execute(
            insert(scheduler_locks),
            {"name": name, "holder": holder, "acquired_at": now, "heartbeat_at": now},
        )
        return None
    stale = row.heartbeat_at < now - timedelta(seconds=stale_after)
    if row.holder != holder and not stale:
        return str(row.holder)
    conn.execute(
        update(scheduler_locks)
        .where(_l.name == name)
        .values(holder=holder, acquired_at=now if row.holder != holder else _l.acquired_at,
                heartbeat_at=now)
    )  # fmt: skip
    return None


def renew_lock(conn: Connection, name: str, holder: str, at: datetime) -> bool:
    """Heartbeat lock *name* if *holder* holds it."""
    stmt = (
        update(scheduler_locks)
        .where(_l.name == name, _l.holder == holder)
        .values(heartbeat_at=to_utc(at))
    )
    return bool(conn.execute(stmt).rowcount)


def release_lock(conn: Connection, name: str, holder: str) -> None:
    """Delete lock *name* if *holder* holds it."""
    conn.execute(scheduler_locks.delete().where(_l.name == name, _l.holder == holder))
