"""Finding runs and flows by what a person types (a run id's prefix, a flow's newest run, names),
and recording the parameters ``rota resume -p`` changed.

Statements on a connection; :class:`~rota.store.sql.SqlStore` exposes them as methods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, union, update

from rota.model.states import RunState
from rota.store.tables import flows, runs


def run_ids_with_prefix(conn: Connection, prefix: str, limit: int) -> list[str]:
    """Ids of runs that start with *prefix* (exactly, in any case of the backend's ``LIKE``),
    newest first, at most *limit*."""
    query = (
        select(runs.c.run_id)
        .where(runs.c.run_id.startswith(prefix, autoescape=True))
        .where(func.substr(runs.c.run_id, 1, len(prefix)) == prefix)  # SQLite's LIKE ignores case
        .order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
        .limit(limit)
    )
    return [row.run_id for row in conn.execute(query)]


def newest_run_id(
    conn: Connection, flow: str | None, states: Sequence[RunState] | None
) -> str | None:
    """The id of the newest run (of *flow*, in one of *states*, when given), if any."""
    query = select(runs.c.run_id).order_by(runs.c.created_at.desc(), runs.c.run_id.desc()).limit(1)
    if flow is not None:
        query = query.where(runs.c.flow == flow)
    if states is not None:
        query = query.where(runs.c.state.in_([s.value for s in states]))
    return conn.execute(query).scalar()


def flow_names(conn: Connection, prefix: str, limit: int) -> list[str]:
    """Names of the flows the store knows (it has seen them, or has runs of them) that start with
    *prefix*, in order, at most *limit*."""
    known = union(select(flows.c.name.label("name")), select(runs.c.flow.label("name"))).subquery()
    query = (
        select(known.c.name)
        .where(func.substr(known.c.name, 1, len(prefix)) == prefix)
        .order_by(known.c.name)
        .limit(limit)
    )
    return [row.name for row in conn.execute(query)]


def set_params(
    conn: Connection,
    run_id: str,
    params: Mapping[str, Any],
    changes: Mapping[str, Any],
    at: datetime,
) -> None:
    """Replace run *run_id*'s parameters and append *changes* to its ``param_changes``
    (inside the caller's write transaction).

    Raises:
        NotFound: no such run.
    """
    from rota.errors import NotFound

    found = conn.execute(select(runs.c.param_changes).where(runs.c.run_id == run_id)).one_or_none()
    if found is None:
        raise NotFound(f"no run {run_id!r} in the store")
    history = list(found.param_changes or [])
    history.append({"at": at.isoformat(), "changes": dict(changes)})
    query = update(runs).where(runs.c.run_id == run_id)
    conn.execute(query.values(params=dict(params), param_changes=history))
