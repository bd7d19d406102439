"""The SQL statements behind :class:`~rota.store.sql.SqlStore`'s writes, and their checks.

Every state change is checked against the state machine before any I/O, then written by a
conditional ``UPDATE … WHERE id = :id AND state = :expect`` whose row count must match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Final, TypeVar

from sqlalchemy import (
    Connection,
    Result,
    RowMapping,
    Select,
    Update,
    bindparam,
    func,
    insert,
    select,
)
from sqlalchemy.sql import Executable

from rota.model.states import (
    TASK_INITIAL,
    RunState,
    TaskState,
    check_run_transition,
    check_task_transition,
)
from rota.store.base import (
    ATTEMPT_FIELDS,
    AttemptRecord,
    Change,
    NewAttempt,
    RunChange,
    RunRecord,
)
from rota.store.rows import read_records, record_maker
from rota.store.tables import flows, runs, task_attempts, to_utc

_TIME_FIELDS: Final = frozenset(name for name in ATTEMPT_FIELDS if name.endswith("_at"))
_RUN_ENDED: Final = frozenset({RunState.SUCCESS, RunState.FAILED, RunState.INTERRUPTED})

_ta = task_attempts.c
_ATTEMPT_UPDATE: Final = task_attempts.update().where(
    _ta.id == bindparam("b_id"), _ta.state == bindparam("b_expect")
)
"""Executed with column names as extra keys: SQLAlchemy turns those into the SET clause."""

_RUN_START: Final = (
    runs.update()
    .where(runs.c.run_id == bindparam("b_id"), runs.c.state == bindparam("b_expect"))
    .values(
        state=bindparam("b_new"),
        started_at=func.coalesce(
            runs.c.started_at, bindparam("b_at", type_=runs.c.started_at.type)
        ),
        ended_at=None,
    )
)
_RUN_END: Final = (
    runs.update()
    .where(runs.c.run_id == bindparam("b_id"), runs.c.state == bindparam("b_expect"))
    .values(state=bindparam("b_new"), ended_at=bindparam("b_at", type_=runs.c.ended_at.type))
)
_RUN_OTHER: Final = (
    runs.update()
    .where(runs.c.run_id == bindparam("b_id"), runs.c.state == bindparam("b_expect"))
    .values(state=bindparam("b_new"))
)


class Mismatch(Exception):
    """Raised inside a write transaction to roll it back; carries the changes that did not match."""

    def __init__(self, changes: Sequence[Change] = (), run_change: RunChange | None = None) -> None:
        super().__init__("rows not in their expected state")
        self.changes = changes
        self.run_change = run_change


def check_changes(
    changes: Sequence[Change], run_changes: Sequence[RunChange], at: datetime
) -> None:
    """Check every change against the state machine and the field list, before any I/O.

    Raises:
        InvalidTransition: a change is not allowed by the state machine.
        ValueError: a change sets a field outside ATTEMPT_FIELDS, or a time is naive.
    """
    to_utc(at)
    for change in changes:
        check_task_transition(change.expect, change.new, what=f"attempt {change.attempt_id}")
        if change.fields:
            check_fields(change)
    for run_change in run_changes:
        check_run_transition(run_change.expect, run_change.new, what=f"run {run_change.run_id}")
        to_utc(run_change.at)


def check_fields(change: Change) -> None:
    """Check that *change* sets only ATTEMPT_FIELDS, and timestamps that are aware.

    Raises:
        ValueError: an unknown field, or a naive datetime.
    """
    if not ATTEMPT_FIELDS.issuperset(change.fields):
        unknown = ", ".join(sorted(set(change.fields) - ATTEMPT_FIELDS))
        raise ValueError(f"attempt {change.attempt_id}: unknown field(s) {unknown}")
    for name in _TIME_FIELDS.intersection(change.fields):
        if change.fields[name] is not None:
            to_utc(change.fields[name])


def group_changes(changes: Sequence[Change]) -> list[list[Change]]:
    """Split *changes* into groups that set the same columns, one executemany each.

    An attempt changed more than once in the batch (queued, running and success in one step)
    keeps its order: its first change is in the first round of groups, its second in the next,
    and so on; within a round every attempt appears once, so its changes group by columns as
    those of distinct attempts do (a batch of n tasks' three changes is a few statements, not
    3n).
    """
    rounds: list[dict[frozenset[str], list[Change]]] = []
    seen: dict[int, int] = {}
    for change in changes:
        level = seen.get(change.attempt_id, 0)
        seen[change.attempt_id] = level + 1
        if level == len(rounds):
            rounds.append({})
        rounds[level].setdefault(frozenset(change.fields), []).append(change)
    # Sorted ids: concurrent PostgreSQL writers lock rows in one order (fewer deadlocks).
    return [sorted(g, key=lambda c: c.attempt_id) for r in rounds for g in r.values()]


def attempt_params(change: Change, at: datetime) -> dict[str, Any]:
    """The values of *change*'s conditional update, by column name (``b_id``, ``b_expect``: the
    row it matches), committed at *at*."""
    return {"b_id": change.attempt_id, "b_expect": change.expect.value,
            "state": change.new.value, "committed_at": at, **change.fields}  # fmt: skip


def update_attempts(conn: Connection, group: list[Change], at: datetime) -> None:
    """Conditionally update the attempts of *group* (all setting the same columns).

    Raises:
        Mismatch: fewer rows than changes were in their expected state.
    """
    params = [attempt_params(c, at) for c in group]
    if conn.execute(_ATTEMPT_UPDATE, params).rowcount != len(group):
        raise Mismatch(changes=group)


def run_statement(change: RunChange) -> tuple[Update, dict[str, Any]]:
    """The conditional update that moves one run, stamping started_at/ended_at, and its values."""
    if change.new is RunState.RUNNING:
        stmt = _RUN_START
    elif change.new in _RUN_ENDED:
        stmt = _RUN_END
    else:
        stmt = _RUN_OTHER
    params = {"b_id": change.run_id, "b_expect": change.expect.value,
              "b_new": change.new.value, "b_at": change.at}  # fmt: skip
    return stmt, params


def update_run(conn: Connection, change: RunChange) -> None:
    """Conditionally move one run, stamping started_at/ended_at.

    Raises:
        Mismatch: the run is not in its expected state.
    """
    stmt, params = run_statement(change)
    if conn.execute(stmt, params).rowcount != 1:
        raise Mismatch(run_change=change)


def flow_upsert(dialect: str, row: dict[str, Any]) -> Executable:
    """An INSERT … ON CONFLICT (name) DO UPDATE for the flows table, in *dialect*."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg = pg_insert(flows).values(row)
        return pg.on_conflict_do_update(
            index_elements=[flows.c.name],
            set_={k: pg.excluded[k] for k in ("path", "code_hash", "updated_at")},
        )
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    lite = sqlite_insert(flows).values(row)
    return lite.on_conflict_do_update(
        index_elements=[flows.c.name],
        set_={k: lite.excluded[k] for k in ("path", "code_hash", "updated_at")},
    )


def run_row(record: RunRecord) -> dict[str, Any]:
    """The runs-table row of a new run."""
    return {
        "run_id": record.run_id, "flow": record.flow, "state": record.state.value,
        "params": record.params, "created_at": record.created_at,
        "flow_path": record.flow_path, "flow_hash": record.flow_hash,
        "logical_date": record.logical_date, "data_interval_start": record.data_interval_start,
        "data_interval_end": record.data_interval_end, "run_type": record.run_type,
    }  # fmt: skip


def run_record(row: RowMapping) -> RunRecord:
    """A RunRecord from a runs-table row.

    Raises:
        ValueError: the row's state is not a run state, or its params are not a JSON object.
    """
    params = row["params"]
    if not isinstance(params, dict):
        raise ValueError(f"params: {type(params).__name__} where a JSON object is expected")
    changes = row.get("param_changes")
    if changes is not None and not isinstance(changes, list):
        raise ValueError(f"param_changes: {type(changes).__name__} where a JSON list is expected")
    return RunRecord(**{**row, "state": _state(RunState, row["state"])})


def attempt_record(row: RowMapping) -> AttemptRecord:
    """An AttemptRecord from a task_attempts row.

    Raises:
        ValueError: the row's state is not a task state.
    """
    return AttemptRecord(**{**row, "state": _state(TaskState, row["state"])})


def attempt_records(result: Result[Any]) -> list[AttemptRecord]:
    """The AttemptRecords of every task_attempts row of *result* (as :func:`attempt_record`
    makes each, several times faster: :func:`~rota.store.rows.record_maker`).

    Raises:
        ValueError: a row's state is not a task state.
    """
    make = _attempt_maker(tuple(result.keys()))
    return [make(row) for row in result]


def read_attempts(conn: Connection, query: Select[Any]) -> list[AttemptRecord]:
    """The attempts *query* (a select of whole task_attempts rows) reads, in its order, made in
    bulk; a bad row is named (:func:`~rota.store.rows.read_records`).

    Raises:
        CorruptRow: a row cannot be read.
    """
    return read_records(
        conn, query, task_attempts.c.id, attempt_record, kind="attempt", convert_all=attempt_records
    )


def _task_state(value: Any) -> TaskState:
    return _state(TaskState, value)


@lru_cache(maxsize=8)
def _attempt_maker(columns: tuple[str, ...]) -> Callable[[Sequence[Any]], AttemptRecord]:
    return record_maker(AttemptRecord, columns, {"state": _task_state})


_S = TypeVar("_S", RunState, TaskState)


def _state(kind: type[_S], value: Any) -> _S:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(s.value for s in kind)
        raise ValueError(f"state: {value!r} is not one of {known}") from None


def first_line(err: BaseException) -> str:
    """The first line of the driver's message (SQLAlchemy's own adds SQL and parameters)."""
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err).strip()
    return text.splitlines()[0] if text else type(err).__name__


READ_BACK_BY_TASK: Final = 100
"""Up to this many distinct task ids, :func:`insert_attempts` reads its new rows back by task
(the unique index on run, task, map index, try); beyond, by the run and state (a resume adding
many tasks reads the run once, and stays within SQLite's limit of bound parameters)."""


def insert_attempts(conn: Connection, new: Sequence[NewAttempt]) -> list[AttemptRecord]:
    """Insert *new* attempts (state ``scheduled``, or the state a mark gives) and read them back,
    in order."""
    if not new:
        return []
    rows = [_attempt_row(n) for n in new]
    conn.execute(insert(task_attempts), rows)
    keys = {(n.task_id, n.map_index, n.try_number) for n in new}
    run_ids = {n.run_id for n in new}
    states = {row["state"] for row in rows}
    query = select(task_attempts).where(_ta.run_id.in_(run_ids), _ta.state.in_(states))
    task_ids = {n.task_id for n in new}
    if len(task_ids) <= READ_BACK_BY_TASK:
        # a retry or a map expansion reads back its own task's rows, not every scheduled
        # attempt of the run (O(run size) per retry in a large run)
        query = query.where(_ta.task_id.in_(task_ids))
    found = {}
    for row in conn.execute(query):
        key = (row.task_id, row.map_index, row.try_number)
        if key in keys:
            found[(row.run_id, *key)] = attempt_record(row._mapping)
    return [found[(n.run_id, n.task_id, n.map_index, n.try_number)] for n in new]


MARKED_FAILED: Final = "MarkedFailed"
"""The error type of an attempt ``rota mark --state failed`` made."""


def _attempt_row(n: NewAttempt) -> dict[str, Any]:
    row = {
        "run_id": n.run_id, "task_id": n.task_id, "map_index": n.map_index,
        "try_number": n.try_number, "state": TASK_INITIAL.value, "operator": n.operator,
        "code_hash": n.code_hash,
        "not_before": to_utc(n.not_before) if n.not_before is not None else None,
        "cleared_at": to_utc(n.cleared_at) if n.cleared_at is not None else None,
        "finished_at": None, "error_type": None, "error_message": None,
    }  # fmt: skip
    if n.marked is not None:
        if n.marked not in (TaskState.SUCCESS, TaskState.FAILED) or n.marked_at is None:
            raise ValueError(f"a mark sets success or failed, at a time: not {n.marked.value}")
        row.update(state=n.marked.value, finished_at=to_utc(n.marked_at))
        if n.marked is TaskState.FAILED:
            row.update(error_type=MARKED_FAILED, error_message="marked failed by hand")
    return row


def set_owner(
    conn: Connection, run_id: str, owner: str | None, expect: str | None, at: datetime | None
) -> bool:
    """Conditionally set the owner (and heartbeat) of a run; True if the row matched."""
    cond = runs.c.owner.is_(None) if expect is None else runs.c.owner == expect
    stmt = (
        runs.update()
        .where(runs.c.run_id == run_id, cond)
        .values(owner=owner, heartbeat_at=to_utc(at) if at is not None else runs.c.heartbeat_at)
    )
    return bool(conn.execute(stmt).rowcount == 1)


__all__ = [
    "Mismatch",
    "attempt_record",
    "attempt_records",
    "check_changes",
    "first_line",
    "flow_upsert",
    "group_changes",
    "insert_attempts",
    "read_attempts",
    "run_record",
    "run_row",
    "set_owner",
    "to_utc",
    "update_attempts",
    "update_run",
]
