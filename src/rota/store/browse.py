"""Reads and small writes for looking at and steering runs: pages of runs, run graphs, paused
flows, cancel requests, and the counts behind ``/metrics``.

Pages of runs are cursor-based (keyset): a page after a cursor is the rows strictly older than the
cursor's ``(created_at, run_id)``, read through the ``(created_at, run_id)`` index, so the page
after the thousandth costs what the first does.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, and_, delete, func, insert, or_, select

from rota.errors import UserError
from rota.model.states import RunState, TaskState
from rota.store.base import RunRecord
from rota.store.rows import OnCorrupt, read_records
from rota.store.tables import flow_pauses, run_cancels, run_graphs, runs, task_attempts
from rota.store.writes import run_record, to_utc

_ta = task_attempts.c
_r = runs.c

Graph = list[tuple[str, tuple[str, ...]]]
"""A run's tasks (in the order the flow defines them), each with its direct upstream ids."""


class BadCursor(UserError):
    """Raised when a page cursor was not made by :func:`cursor_of`."""


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Which runs a page holds: filters, and the cursor of the previous page's last run.

    Attributes:
        flow: only runs of this flow.
        states: only runs in one of these states (empty: any).
        since, until: only runs created at or after / before these times.
        after: a cursor from :func:`cursor_of`: only runs older than that run.
        limit: at most this many runs.
        offset: skip this many of the runs selected first (a walk of the index, no rows read).
    """

    flow: str | None = None
    states: tuple[RunState, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    after: str | None = None
    limit: int = 50
    offset: int = 0


def cursor_of(run: RunRecord) -> str:
    """An opaque cursor naming *run*'s place in the newest-first order."""
    raw = f"{to_utc(run.created_at).isoformat()}|{run.run_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(cursor: str) -> tuple[datetime, str]:
    """The ``(created_at, run_id)`` a cursor names.

    Raises:
        BadCursor: *cursor* is not one :func:`cursor_of` makes.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, sep, run_id = raw.partition("|")
        at = datetime.fromisoformat(stamp)
    except (ValueError, UnicodeDecodeError):
        raise BadCursor("the page cursor is not one this server made") from None
    if not sep or not run_id or at.tzinfo is None:
        raise BadCursor("the page cursor is not one this server made")
    return at, run_id


def page_runs(
    conn: Connection, query: RunQuery, on_corrupt: OnCorrupt | None = None
) -> list[RunRecord]:
    """The runs *query* selects, newest first (then by run id, descending).

    Raises:
        BadCursor: ``query.after`` is not a cursor of ours.
    """
    stmt = select(runs).order_by(_r.created_at.desc(), _r.run_id.desc()).limit(query.limit)
    if query.flow is not None:
        stmt = stmt.where(_r.flow == query.flow)
    if query.states:
        stmt = stmt.where(_r.state.in_([s.value for s in query.states]))
    if query.since is not None:
        stmt = stmt.where(_r.created_at >= to_utc(query.since))
    if query.until is not None:
        stmt = stmt.where(_r.created_at < to_utc(query.until))
    if query.after is not None:
        at, run_id = read_cursor(query.after)
        stmt = stmt.where(or_(_r.created_at < at, and_(_r.created_at == at, _r.run_id < run_id)))
    if query.offset:
        stmt = stmt.offset(query.offset)
    return read_records(conn, stmt, _r.run_id, run_record, kind="run", on_corrupt=on_corrupt)


def graph_rows(tasks: Sequence[tuple[str, Sequence[str]]]) -> list[list[Any]]:
    """The stored form of a graph."""
    return [[tid, list(ups)] for tid, ups in tasks]


def _graph(value: Any) -> Graph | None:
    if not isinstance(value, list):
        return None
    out: Graph = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            return None
        ups = item[1] if isinstance(item[1], list) else []
        out.append((item[0], tuple(str(u) for u in ups)))
    return out


def run_graph(conn: Connection, run_id: str) -> Graph | None:
    """The graph run *run_id* was made with; None for a run made before graphs were recorded (or
    a row that does not read as a graph)."""
    value = conn.execute(select(run_graphs.c.graph).where(run_graphs.c.run_id == run_id)).scalar()
    return None if value is None else _graph(value)


def latest_graph(conn: Connection, flow: str) -> tuple[str, Graph] | None:
    """The newest run of *flow* that recorded its graph, and that graph."""
    stmt = (
        select(_r.run_id, run_graphs.c.graph)
        .join(run_graphs, run_graphs.c.run_id == _r.run_id)
        .where(_r.flow == flow)
        .order_by(_r.created_at.desc(), _r.run_id.desc())
        .limit(1)
    )
    row = conn.execute(stmt).one_or_none()
    if row is None:
        return None
    graph = _graph(row.graph)
    return None if graph is None else (row.run_id, graph)


def task_states(conn: Connection, run_ids: Sequence[str]) -> dict[str, dict[str, TaskState]]:
    """Per run, each task's state (its latest attempt's; a mapped task as a whole)."""
    if not run_ids:
        return {}
    stmt = (
        select(_ta.run_id, _ta.task_id, _ta.try_number, _ta.state)
        .where(_ta.run_id.in_(list(run_ids)), _ta.map_index < 0)
        .order_by(_ta.run_id, _ta.task_id, _ta.try_number)
    )
    out: dict[str, dict[str, TaskState]] = {run_id: {} for run_id in run_ids}
    for row in conn.execute(stmt):
        try:
            out[row.run_id][row.task_id] = TaskState(row.state)
        except ValueError:
            continue  # a state no version of Rota wrote: the task shows as unknown
    return out


def recent_runs(
    conn: Connection, flows: Sequence[str], per_flow: int
) -> dict[str, list[tuple[str, str]]]:
    """The last *per_flow* runs of each of *flows*, newest first, as ``(run id, state)``: one
    query per flow, each a short walk of the ``(flow, created_at)`` index."""
    out: dict[str, list[tuple[str, str]]] = {}
    for flow in flows:
        stmt = (
            select(_r.run_id, _r.state)
            .where(_r.flow == flow)
            .order_by(_r.created_at.desc(), _r.run_id.desc())
            .limit(per_flow)
        )
        out[flow] = [(row.run_id, row.state) for row in conn.execute(stmt)]
    return out


def flow_names(conn: Connection) -> list[str]:
    """Every flow name the store has a run or a flow record of, sorted."""
    from rota.store.tables import flows

    names = set(conn.execute(select(flows.c.name)).scalars())
    names.update(conn.execute(select(_r.flow).distinct()).scalars())
    return sorted(names)


def paused_flows(conn: Connection) -> dict[str, datetime]:
    """Paused flows, with when each was paused."""
    rows = conn.execute(select(flow_pauses.c.flow, flow_pauses.c.paused_at))
    return {row.flow: row.paused_at for row in rows}


def set_paused(conn: Connection, flow: str, paused: bool, at: datetime) -> bool:
    """Pause or unpause *flow*; True when that changed something."""
    held = conn.execute(select(flow_pauses.c.flow).where(flow_pauses.c.flow == flow)).scalar()
    if paused == (held is not None):
        return False
    if paused:
        conn.execute(insert(flow_pauses).values(flow=flow, paused_at=to_utc(at)))
    else:
        conn.execute(delete(flow_pauses).where(flow_pauses.c.flow == flow))
    return True


def request_cancel(conn: Connection, run_id: str, by: str, at: datetime) -> None:
    """Record (or renew) a cancel request for *run_id*."""
    conn.execute(delete(run_cancels).where(run_cancels.c.run_id == run_id))
    conn.execute(
        insert(run_cancels).values(run_id=run_id, requested_at=to_utc(at), requested_by=by)
    )


def cancel_request(conn: Connection, run_id: str) -> tuple[datetime, str] | None:
    """When and by whom a cancel of *run_id* was asked, if it was."""
    stmt = select(run_cancels.c.requested_at, run_cancels.c.requested_by).where(
        run_cancels.c.run_id == run_id
    )
    row = conn.execute(stmt).one_or_none()
    return None if row is None else (row.requested_at, row.requested_by)


RUN_STATES: Final = tuple(s.value for s in RunState)
TASK_STATES: Final = tuple(s.value for s in TaskState)


def count_by_state(conn: Connection) -> tuple[dict[str, int], dict[str, int]]:
    """How many runs, and how many task attempts, are in each state."""
    run_counts = dict.fromkeys(RUN_STATES, 0)
    for state, n in conn.execute(select(_r.state, func.count()).group_by(_r.state)):
        run_counts[str(state)] = int(n)
    task_counts = dict.fromkeys(TASK_STATES, 0)
    for state, n in conn.execute(select(_ta.state, func.count()).group_by(_ta.state)):
        task_counts[str(state)] = int(n)
    return run_counts, task_counts


def _seconds(conn: Connection) -> Any:
    """The SQL expression of an attempt's execution time in seconds, per dialect."""
    if conn.dialect.name == "sqlite":
        return (func.julianday(_ta.finished_at) - func.julianday(_ta.started_at)) * 86400.0
    return func.extract("epoch", _ta.finished_at - _ta.started_at)


def duration_histogram(
    conn: Connection, bounds: Sequence[float]
) -> tuple[dict[float, int], int, float]:
    """Of every attempt that started and finished: how many took at most each of *bounds*
    seconds (cumulative, as Prometheus buckets count), how many there are, and their total
    seconds."""
    seconds = _seconds(conn)
    done = and_(_ta.started_at.is_not(None), _ta.finished_at.is_not(None))
    columns: list[Any] = [func.count(), func.coalesce(func.sum(seconds), 0.0)]
    columns += [func.count().filter(seconds <= bound) for bound in bounds]
    row = conn.execute(select(*columns).where(done)).one()
    buckets = {bound: int(row[2 + i]) for i, bound in enumerate(bounds)}
    return buckets, int(row[0]), float(row[1])


def queue_depth(conn: Connection) -> int:
    """Attempts ready and waiting for a worker (state ``queued``)."""
    stmt = select(func.count()).where(_ta.state == TaskState.QUEUED.value)
    return int(conn.execute(stmt).scalar() or 0)


def lock_heartbeats(conn: Connection) -> Mapping[str, datetime]:
    """Each held scheduler lock and its holder's last heartbeat."""
    from rota.store.tables import scheduler_locks as locks

    rows = conn.execute(select(locks.c.name, locks.c.heartbeat_at))
    return {row.name: row.heartbeat_at for row in rows}
