"""A run at a glance, read with a constant number of queries whatever its size: counts by state,
the first failed tasks, the slowest ones and the time tasks took; and pages of a run's tasks.

Every read goes through an index: ``ix_task_attempts_run_id_state`` for the counts and the failed
tasks, ``ix_task_attempts_run_first`` (migration 0007) for a page in the order the run's tasks
were made, and the unique ``(run_id, task_id, map_index, try_number)`` key to tell a task's latest
attempt from the ones before it. Nothing here reads more rows into Python than a page holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, and_, exists, func, select

from rota.model.states import SUCCEEDED, TaskState
from rota.store.base import AttemptRecord
from rota.store.browse import _seconds
from rota.store.rows import read_records
from rota.store.tables import task_attempts
from rota.store.writes import attempt_record

_ta = task_attempts.c
_later = task_attempts.alias("later")

TOP: Final = 10
"""Failed tasks a digest names unless told otherwise."""

SLOWEST: Final = 5
"""Slowest tasks a digest names unless told otherwise."""


@dataclass(frozen=True, slots=True)
class TaskLine:
    """One task (``fit``) or mapped instance (``fit[3]``) named in a digest: its latest attempt."""

    name: str
    state: TaskState
    try_number: int
    seconds: float | None = None
    error_type: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class RunDigest:
    """What a run's tasks came to, in a constant number of lines however many tasks it has.

    Attributes:
        tasks: the run's tasks (a mapped task counts once).
        states: tasks by the state of their latest attempt.
        instances: mapped instances by the state of their latest attempt (empty: no map).
        failed: the first failed tasks and instances, in the order they were made.
        failed_total: how many failed in all (tasks and instances).
        slowest: the tasks and instances whose latest attempt ran longest, longest first.
        timed: latest attempts that ran (started and finished).
        seconds_total: the time they took together.
        seconds_max: the longest of them.
    """

    tasks: int
    states: dict[str, int]
    instances: dict[str, int] = field(default_factory=dict)
    failed: list[TaskLine] = field(default_factory=list)
    failed_total: int = 0
    slowest: list[TaskLine] = field(default_factory=list)
    timed: int = 0
    seconds_total: float = 0.0
    seconds_max: float | None = None


def _is_latest() -> Any:
    """True for an attempt no later try of the same task (or instance) follows."""
    later = and_(
        _later.c.run_id == _ta.run_id,
        _later.c.task_id == _ta.task_id,
        _later.c.map_index == _ta.map_index,
        _later.c.try_number > _ta.try_number,
    )
    return ~exists().where(later)


def _line(row: Any, seconds: float | None = None) -> TaskLine:
    name = row.task_id if row.map_index < 0 else f"{row.task_id}[{row.map_index}]"
    try:
        state = TaskState(row.state)
    except ValueError:  # a state no version of Rota wrote: shown as failed would be a lie
        state = TaskState.SCHEDULED
    return TaskLine(name, state, row.try_number, seconds, row.error_type, row.error_message)


def run_digest(conn: Connection, run_id: str, top: int = TOP, slowest: int = SLOWEST) -> RunDigest:
    """The digest of run *run_id* (see :class:`RunDigest`) in five queries: its first *top*
    failed tasks and its *slowest* slowest."""
    latest = and_(_ta.run_id == run_id, _is_latest())
    mapped = _ta.map_index >= 0
    count_q = select(mapped.label("mapped"), _ta.state, func.count()).where(latest)
    states: dict[str, int] = {}
    instances: dict[str, int] = {}
    for is_mapped, state, n in conn.execute(count_q.group_by(mapped, _ta.state)):
        (instances if is_mapped else states)[str(state)] = int(n)
    failed_where = and_(latest, _ta.state == TaskState.FAILED.value)
    # a mapped task that failed is named by its failed instances, each with its own error
    failed_rows = and_(failed_where, ~and_(_ta.map_index < 0, _has_instances()))
    columns = (
        _ta.task_id,
        _ta.map_index,
        _ta.state,
        _ta.try_number,
        _ta.error_type,
        _ta.error_message,
    )
    failed_q = select(*columns).where(failed_rows).order_by(_ta.id).limit(top)
    failed = [_line(row) for row in conn.execute(failed_q)]
    failed_total = int(conn.execute(select(func.count()).where(failed_rows)).scalar() or 0)
    seconds = _seconds(conn)
    ran = and_(latest, _ta.started_at.is_not(None), _ta.finished_at.is_not(None))
    slow_q = select(*columns, seconds.label("s")).where(ran).order_by(seconds.desc())
    slow = [_line(row, float(row.s)) for row in conn.execute(slow_q.limit(slowest))]
    total_q = select(func.count(), func.coalesce(func.sum(seconds), 0.0), func.max(seconds))
    timed, total, longest = conn.execute(total_q.where(ran)).one()
    return RunDigest(
        tasks=sum(states.values()),
        states=states,
        instances=instances,
        failed=failed,
        failed_total=failed_total,
        slowest=slow,
        timed=int(timed),
        seconds_total=float(total),
        seconds_max=None if longest is None else float(longest),
    )


def _has_instances() -> Any:
    """True for a task row whose task has mapped instances."""
    inst = task_attempts.alias("inst")
    return exists().where(
        inst.c.run_id == _ta.run_id, inst.c.task_id == _ta.task_id, inst.c.map_index >= 0
    )


@dataclass(frozen=True, slots=True)
class TaskPage:
    """A page of a run's tasks, as :func:`task_page` reads it.

    Attributes:
        task_ids: the page's tasks, in the order the run made them.
        attempts: every attempt of those tasks' own rows, and of the instances shown: for a
            mapped task, its first ``instances`` instances that did not succeed.
        instance_counts: per mapped task on the page, its instances by the state of their latest
            attempt, plus ``count``: all of them.
    """

    task_ids: list[str]
    attempts: list[AttemptRecord]
    instance_counts: dict[str, dict[str, int]]


def task_page(
    conn: Connection, run_id: str, limit: int, offset: int, *, instances: int = 20
) -> TaskPage:
    """Tasks *offset* to *offset + limit* of run *run_id* in the order the run made them.

    The page is found on ``ix_task_attempts_run_first`` (each task's first try), then its rows by
    the unique key; a mapped task brings its instance counts (counted in SQL) and at most
    *instances* of its instances that did not succeed: the cost is the page's, not the run's.
    """
    first = (
        select(_ta.task_id)
        .where(_ta.run_id == run_id, _ta.map_index == -1, _ta.try_number == 1)
        .order_by(_ta.id)
        .limit(limit)
        .offset(offset)
    )
    ids = list(conn.execute(first).scalars())
    if not ids:
        return TaskPage([], [], {})
    own = select(task_attempts).where(
        _ta.run_id == run_id, _ta.task_id.in_(ids), _ta.map_index == -1
    )
    records = read_records(conn, own.order_by(_ta.id), _ta.id, attempt_record, kind="attempt")
    counts = _instance_counts(conn, run_id, ids)
    for task_id in counts:
        records += _unfinished_instances(conn, run_id, task_id, instances)
    return TaskPage(ids, records, counts)


def _instance_counts(
    conn: Connection, run_id: str, ids: Sequence[str]
) -> dict[str, dict[str, int]]:
    query = (
        select(_ta.task_id, _ta.state, func.count())
        .where(_ta.run_id == run_id, _ta.task_id.in_(ids), _ta.map_index >= 0, _is_latest())
        .group_by(_ta.task_id, _ta.state)
    )
    out: dict[str, dict[str, int]] = {}
    for task_id, state, n in conn.execute(query):
        counts = out.setdefault(str(task_id), {"count": 0})
        counts[str(state)] = int(n)
        counts["count"] += int(n)
    return out


def _unfinished_instances(
    conn: Connection, run_id: str, task_id: str, most: int
) -> list[AttemptRecord]:
    """Every attempt of the first *most* instances of *task_id* whose latest did not succeed."""
    done = [state.value for state in SUCCEEDED]
    shown = (
        select(_ta.map_index)
        .where(_ta.run_id == run_id, _ta.task_id == task_id, _ta.map_index >= 0)
        .where(_is_latest(), _ta.state.not_in(done))
        .order_by(_ta.map_index)
        .limit(most)
    )
    indexes = list(conn.execute(shown).scalars())
    if not indexes:
        return []
    query = select(task_attempts).where(
        _ta.run_id == run_id, _ta.task_id == task_id, _ta.map_index.in_(indexes)
    )
    return read_records(conn, query.order_by(_ta.id), _ta.id, attempt_record, kind="attempt")
