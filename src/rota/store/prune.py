"""Finding and deleting old runs for ``rota runs prune``: statements on a connection, exposed as
:class:`~rota.store.sql.SqlStore` methods.

A run is old when it ended (or, never started, was made) before a cutoff and no runner can be on
it (it is not queued or running). Deleting a run deletes its attempts, its graph and a pending
cancel; dataset versions and uses are kept, as lineage, and so that a version number is never
given twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, case, delete, func, select

from rota.model.states import RunState
from rota.store.base import PruneCandidate
from rota.store.tables import run_cancels, run_graphs, runs, task_attempts

_LIVE: Final = (RunState.QUEUED.value, RunState.RUNNING.value)
_BATCH: Final = 500
"""Run ids per ``IN (...)`` list (SQLite limits the variables of one statement)."""


def old_runs(conn: Connection, before: datetime, flow: str | None) -> list[PruneCandidate]:
    """Runs (of *flow*, when given) that ended, or were made and never started, before *before*
    and are not queued or running, oldest first, each with what it holds and the runs whose
    cached attempts reuse its outputs."""
    when = func.coalesce(runs.c.ended_at, runs.c.created_at)
    query = select(runs.c.run_id, runs.c.flow, runs.c.state, when.label("ended")).where(
        when < before, runs.c.state.not_in(_LIVE)
    )
    if flow is not None:
        query = query.where(runs.c.flow == flow)
    found = conn.execute(query.order_by(when, runs.c.run_id)).all()
    old = query.with_only_columns(runs.c.run_id).scalar_subquery()
    held = _held(conn, old)
    users = _reused_by(conn, old)
    return [
        PruneCandidate(
            run_id=row.run_id,
            flow=row.flow,
            state=RunState(row.state),
            ended_at=row.ended,
            attempts=held.get(row.run_id, (0, 0))[0],
            output_bytes=held.get(row.run_id, (0, 0))[1],
            reused_by=tuple(sorted(users.get(row.run_id, ()))),
        )
        for row in found
    ]


def _held(conn: Connection, old: Any) -> dict[str, tuple[int, int]]:
    """Per run of *old*: its attempts, and the bytes of the outputs it stored itself (a cache
    hit reuses another attempt's)."""
    size = func.coalesce(task_attempts.c.output_size, 0)
    own = func.sum(case((task_attempts.c.cached_from.is_(None), size), else_=0))
    query = (
        select(task_attempts.c.run_id, func.count().label("n"), own.label("bytes"))
        .where(task_attempts.c.run_id.in_(old))
        .group_by(task_attempts.c.run_id)
    )
    return {row.run_id: (int(row.n), int(row.bytes or 0)) for row in conn.execute(query)}


def _reused_by(conn: Connection, old: Any) -> dict[str, set[str]]:
    """Per run of *old*: the other runs with a cache hit on one of its outputs (a hit keeps
    reading the output where the first run stored it)."""
    source = task_attempts.alias("source")
    query = (
        select(source.c.run_id.label("owner"), task_attempts.c.run_id.label("user"))
        .join(source, source.c.id == task_attempts.c.cached_from)
        .where(source.c.run_id.in_(old), task_attempts.c.run_id != source.c.run_id)
        .distinct()
    )
    out: dict[str, set[str]] = {}
    for row in conn.execute(query):
        out.setdefault(row.owner, set()).add(row.user)
    return out


def delete_runs(conn: Connection, run_ids: Sequence[str]) -> int:
    """Delete the rows of *run_ids* (inside the caller's write transaction); the runs deleted."""
    deleted = 0
    for start in range(0, len(run_ids), _BATCH):
        batch = list(run_ids[start : start + _BATCH])
        for table in (task_attempts, run_graphs, run_cancels):
            conn.execute(delete(table).where(table.c.run_id.in_(batch)))
        deleted += conn.execute(delete(runs).where(runs.c.run_id.in_(batch))).rowcount or 0
    return deleted
