"""A run at a glance, read with a constant number of queries whatever its size: counts by state,
the first failed tasks, the slowest ones and the time tasks took; and pages of a run's tasks.

Every read goes through an index: ``ix_task_attempts_run_id_state`` for the counts and the failed
tasks, ``ix_task_attempts_run_first`` (migration 0008) for a page in the order the run's tasks
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
from rota.store.tables import task_attempts
from rota.store.writes import read_attempts

_ta = task_attempts.c
_later = task_attempts.alias("later")
_LINE_COLUMNS: Final = (
    _ta.task_id, _ta.map_index, _ta.state, _ta.try_number, _ta.error_type, _ta.error_message
)  # fmt: skip

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
    """The digest of run *run_id* (see :class:`RunDigest`): its first *top* failed tasks and its
    *slowest* slowest.

    Five queries, none of which asks of each row whether a later try follows it (a probe per
    row): the run's rows are counted whole, then the tries that a later one replaced (found from
    the tasks with a try past the first, usually few) are taken off.
    """
    seconds = _seconds(conn)
    gone = _replaced(conn, run_id, seconds)
    states, instances, timed, total = _tally(conn, run_id, seconds, gone)
    columns = _LINE_COLUMNS
    slow = _slowest(conn, run_id, seconds, columns, max(slowest, 1), gone)
    failed_where = and_(_ta.run_id == run_id, _ta.state == TaskState.FAILED.value, _is_latest())
    # a mapped task that failed is named by its failed instances, each with its own error
    failed_rows = and_(failed_where, ~and_(_ta.map_index < 0, _has_instances()))
    failed_q = select(*columns).where(failed_rows).order_by(_ta.id).limit(top)
    failed = [_line(row) for row in conn.execute(failed_q)]
    failed_total = int(conn.execute(select(func.count()).where(failed_rows)).scalar() or 0)
    return RunDigest(
        tasks=sum(states.values()),
        states=states,
        instances=instances,
        failed=failed,
        failed_total=failed_total,
        slowest=slow[:slowest],
        timed=timed,
        seconds_total=total,
        seconds_max=slow[0].seconds if slow else None,
    )


@dataclass(frozen=True, slots=True)
class _Replaced:
    """The tries of run's tasks that a later try replaced: ids, and their counts to take off."""

    ids: frozenset[int]
    counts: dict[tuple[bool, str], int]
    timed: int
    seconds: float


def _replaced(conn: Connection, run_id: str, seconds: Any) -> _Replaced:
    retried = (
        select(_ta.task_id, _ta.map_index, func.max(_ta.try_number).label("last"))
        .where(_ta.run_id == run_id, _ta.try_number > 1)
        .group_by(_ta.task_id, _ta.map_index)
        .subquery()
    )
    joined = and_(
        _ta.task_id == retried.c.task_id,
        _ta.map_index == retried.c.map_index,
        _ta.try_number < retried.c.last,
    )
    query = select(_ta.id, _ta.map_index, _ta.state, seconds.label("s")).join(retried, joined)
    ids: set[int] = set()
    counts: dict[tuple[bool, str], int] = {}
    timed, total = 0, 0.0
    for row in conn.execute(query.where(_ta.run_id == run_id)):
        ids.add(int(row.id))
        key = (row.map_index >= 0, str(row.state))
        counts[key] = counts.get(key, 0) + 1
        if row.s is not None:
            timed, total = timed + 1, total + float(row.s)
    return _Replaced(frozenset(ids), counts, timed, total)


def _tally(
    conn: Connection, run_id: str, seconds: Any, gone: _Replaced
) -> tuple[dict[str, int], dict[str, int], int, float]:
    """Tasks and instances by the state of their latest try; how many ran, and for how long."""
    mapped = _ta.map_index >= 0
    query = (
        select(mapped.label("mapped"), _ta.state, func.count(), func.count(seconds))
        .add_columns(func.coalesce(func.sum(seconds), 0.0))
        .where(_ta.run_id == run_id)
        .group_by(mapped, _ta.state)
    )
    states: dict[str, int] = {}
    instances: dict[str, int] = {}
    timed, total = -gone.timed, -gone.seconds
    for is_mapped, state, n, n_timed, spent in conn.execute(query):
        left = int(n) - gone.counts.get((bool(is_mapped), str(state)), 0)
        if left:
            (instances if is_mapped else states)[str(state)] = left
        timed, total = timed + int(n_timed), total + float(spent)
    return states, instances, timed, max(total, 0.0)


def _slowest(
    conn: Connection, run_id: str, seconds: Any, columns: Any, most: int, gone: _Replaced
) -> list[TaskLine]:
    """The *most* latest tries that ran longest: as many more as were replaced are read, and the
    replaced ones dropped."""
    ran = and_(_ta.run_id == run_id, _ta.started_at.is_not(None), _ta.finished_at.is_not(None))
    query = select(_ta.id, *columns, seconds.label("s")).where(ran).order_by(seconds.desc())
    rows = conn.execute(query.limit(most + len(gone.ids)))
    return [_line(row, float(row.s)) for row in rows if row.id not in gone.ids][:most]


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
    records = read_attempts(conn, own.order_by(_ta.id))
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
    return read_attempts(conn, query.order_by(_ta.id))
