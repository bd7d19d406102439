"""The SQL store: one SQLAlchemy Core implementation of :class:`~rota.store.base.Store`.

It runs on SQLite (the embedded default) and on PostgreSQL through psycopg 3; how it connects and
migrates is in :mod:`rota.store.connect`. Opening a store migrates its schema when, and only when,
the ``alembic_version`` row is not the head revision. :meth:`SqlStore.apply` is the one writer of
states: conditional ``UPDATE … WHERE id = :id AND state = :expect`` statements, one executemany per
set of columns, all in one transaction whose row counts must all match.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

from sqlalchemy import Connection, Engine, RowMapping, bindparam, func, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.sql import Executable

from rota.errors import ConcurrentUpdate, NotFound, StoreError
from rota.model.states import (
    RUN_INITIAL,
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
    FlowRecord,
    NewTask,
    RunChange,
    RunRecord,
)
from rota.store.connect import HEAD_REVISION, connect, schema_revision, upgrade, writer
from rota.store.tables import flows, runs, task_attempts

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


class _Mismatch(Exception):
    """Raised inside a write transaction to roll it back; carries the changes that did not match."""

    def __init__(self, changes: Sequence[Change] = (), run_change: RunChange | None = None) -> None:
        super().__init__("rows not in their expected state")
        self.changes = changes
        self.run_change = run_change


def open_store(url: str) -> SqlStore:
    """Open the store at *url*, creating a SQLite file's folder and migrating the schema if needed.

    Args:
        url: ``sqlite:///PATH`` or ``postgresql+psycopg://USER@HOST:PORT/DB`` (``postgresql://``
            means psycopg 3 too).

    Raises:
        StoreError: the URL is invalid, the database cannot be opened, or migrating it failed.
    """
    store = SqlStore(connect(url))
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store


class SqlStore:
    """The store on SQLite or PostgreSQL; see the module docstring. Make one with open_store()."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self.url: Final = engine.url.render_as_string(hide_password=True)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for diagnostics and tests; write through :meth:`apply`)."""
        return self._engine

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release connections."""
        self._engine.dispose()

    def migrate(self) -> None:
        """Bring the schema to the head revision; one cheap query when it is there already.

        Raises:
            StoreError: the database cannot be reached, or a migration failed.
        """
        with self._errors("open"):
            if schema_revision(self._engine) != HEAD_REVISION:
                upgrade(self._engine)

    def upsert_flow(self, name: str, path: str, code_hash: str, at: datetime) -> None:
        """Record that flow *name* was loaded from *path* with *code_hash*."""
        row = {"name": name, "path": path, "code_hash": code_hash, "updated_at": _aware(at)}
        with self._errors(f"record flow {name!r}"), self._write() as conn:
            conn.execute(_flow_upsert(conn.dialect.name, row))

    def get_flow(self, name: str) -> FlowRecord | None:
        """The flow record named *name*, if the store has seen it."""
        with self._errors(f"read flow {name!r}"), self._engine.connect() as conn:
            row = conn.execute(select(flows).where(flows.c.name == name)).one_or_none()
        return None if row is None else FlowRecord(**row._mapping)

    def create_run(
        self,
        run_id: str,
        flow: str,
        params: Mapping[str, Any],
        tasks: Sequence[NewTask],
        at: datetime,
        *,
        flow_path: str = "",
        flow_hash: str = "",
    ) -> RunRecord:
        """Create a run (``queued``) and one ``scheduled`` attempt per task, in one transaction.

        Raises:
            StoreError: *run_id* exists already, or two tasks share an id and map index.
        """
        record = RunRecord(
            run_id, flow, RUN_INITIAL, dict(params), _aware(at),
            flow_path=flow_path, flow_hash=flow_hash,
        )  # fmt: skip
        rows = [
            {"run_id": run_id, "task_id": t.task_id, "map_index": t.map_index, "try_number": 1,
             "state": TASK_INITIAL.value, "operator": t.operator, "code_hash": t.code_hash}
            for t in tasks
        ]  # fmt: skip
        with self._errors(f"create run {run_id!r}"), self._write() as conn:
            try:
                conn.execute(insert(runs), _run_row(record))
            except sa_exc.IntegrityError as err:
                raise StoreError(f"run {run_id!r} exists already") from err
            if rows:
                conn.execute(insert(task_attempts), rows)
        return record

    def apply(
        self, changes: Sequence[Change], run_changes: Sequence[RunChange] = (), *, at: datetime
    ) -> None:
        """Commit *changes* and *run_changes* in one transaction, stamping ``committed_at=at``.

        Raises:
            InvalidTransition: a change is not allowed by the state machine (nothing written).
            ValueError: a change sets a field outside ATTEMPT_FIELDS, or a time is naive.
            ConcurrentUpdate: a row was not in its expected state (nothing written).
            StoreError: the database failed (nothing written).
        """
        _check(changes, run_changes, at)
        if not changes and not run_changes:
            return
        groups = _group(changes)
        try:
            with self._errors("apply changes"), self._write() as conn:
                for group in groups:
                    _update_attempts(conn, group, at)
                for change in run_changes:
                    _update_run(conn, change)
        except _Mismatch as err:
            what = self._describe_mismatch(err)
            raise ConcurrentUpdate(f"{what}; nothing was written") from None

    def get_run(self, run_id: str) -> RunRecord:
        """The run *run_id*.

        Raises:
            NotFound: no such run.
        """
        with self._errors(f"read run {run_id!r}"), self._engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.run_id == run_id)).one_or_none()
        if row is None:
            raise NotFound(f"no run {run_id!r} in the store")
        return _run_record(row._mapping)

    def list_runs(self, flow: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first (then by run id, descending), optionally of one flow only."""
        query = select(runs).order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
        if flow is not None:
            query = query.where(runs.c.flow == flow)
        if limit is not None:
            query = query.limit(limit)
        with self._errors("list runs"), self._engine.connect() as conn:
            return [_run_record(row._mapping) for row in conn.execute(query)]

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        """Every attempt of run *run_id*, in creation (id) order."""
        query = select(task_attempts).where(_ta.run_id == run_id).order_by(_ta.id)
        with self._errors(f"read attempts of run {run_id!r}"), self._engine.connect() as conn:
            return [_attempt_record(row._mapping) for row in conn.execute(query)]

    def _describe_mismatch(self, err: _Mismatch) -> str:
        """Name the rows of *err* whose state (now, after the rollback) is not the expected one."""
        with self._errors("read states"), self._engine.connect() as conn:
            if err.run_change is not None:
                rc = err.run_change
                query = select(runs.c.state).where(runs.c.run_id == rc.run_id)
                state = conn.execute(query).scalar()
                return f"run {rc.run_id!r} is {state or 'missing'}, expected {rc.expect.value}"
            ids = [c.attempt_id for c in err.changes]
            query = select(_ta.id, _ta.state).where(_ta.id.in_(ids))
            found: dict[int, str] = {row.id: row.state for row in conn.execute(query)}
        wrong = [
            f"attempt {c.attempt_id} is {found.get(c.attempt_id, 'missing')}, "
            f"expected {c.expect.value}"
            for c in err.changes
            if found.get(c.attempt_id) != c.expect.value
        ]
        if not wrong:  # changed back meanwhile, or one attempt changed twice in the batch
            wrong = [f"attempt {c.attempt_id} not in state {c.expect.value}" for c in err.changes]
        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
        return "; ".join(wrong[:3]) + more

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed on success, rolled back on error."""
        with self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn SQLAlchemy errors into a one-line StoreError naming the store."""
        try:
            yield
        except sa_exc.SQLAlchemyError as err:
            raise StoreError(f"cannot {doing} in {self.url}: {_first_line(err)}") from err


def _check(changes: Sequence[Change], run_changes: Sequence[RunChange], at: datetime) -> None:
    """Check every change against the state machine and the field list, before any I/O.

    Raises:
        InvalidTransition: a change is not allowed by the state machine.
        ValueError: a change sets a field outside ATTEMPT_FIELDS, or a time is naive.
    """
    _aware(at)
    for change in changes:
        check_task_transition(change.expect, change.new, what=f"attempt {change.attempt_id}")
        if change.fields:
            _check_fields(change)
    for run_change in run_changes:
        check_run_transition(run_change.expect, run_change.new, what=f"run {run_change.run_id}")
        _aware(run_change.at)


def _check_fields(change: Change) -> None:
    """Check that *change* sets only ATTEMPT_FIELDS, and timestamps that are aware.

    Raises:
        ValueError: an unknown field, or a naive datetime.
    """
    if not ATTEMPT_FIELDS.issuperset(change.fields):
        unknown = ", ".join(sorted(set(change.fields) - ATTEMPT_FIELDS))
        raise ValueError(f"attempt {change.attempt_id}: unknown field(s) {unknown}")
    for name in _TIME_FIELDS.intersection(change.fields):
        if change.fields[name] is not None:
            _aware(change.fields[name])


def _group(changes: Sequence[Change]) -> list[list[Change]]:
    """Split *changes* into groups that set the same columns, one executemany each.

    When an attempt appears more than once, only neighbours are grouped, so order is kept.
    """
    if len({c.attempt_id for c in changes}) == len(changes):
        by_columns: dict[frozenset[str], list[Change]] = {}
        for change in changes:
            by_columns.setdefault(frozenset(change.fields), []).append(change)
        # Sorted ids: concurrent PostgreSQL writers lock rows in one order (fewer deadlocks).
        return [sorted(g, key=lambda c: c.attempt_id) for g in by_columns.values()]
    runs_of_same: list[list[Change]] = []
    for change in changes:
        if runs_of_same and runs_of_same[-1][0].fields.keys() == change.fields.keys():
            runs_of_same[-1].append(change)
        else:
            runs_of_same.append([change])
    return runs_of_same


def _update_attempts(conn: Connection, group: list[Change], at: datetime) -> None:
    """Conditionally update the attempts of *group* (all setting the same columns).

    Raises:
        _Mismatch: fewer rows than changes were in their expected state.
    """
    params = [
        {"b_id": c.attempt_id, "b_expect": c.expect.value, "state": c.new.value,
         "committed_at": at, **c.fields}
        for c in group
    ]  # fmt: skip
    if conn.execute(_ATTEMPT_UPDATE, params).rowcount != len(group):
        raise _Mismatch(changes=group)


def _update_run(conn: Connection, change: RunChange) -> None:
    """Conditionally move one run, stamping started_at/ended_at.

    Raises:
        _Mismatch: the run is not in its expected state.
    """
    if change.new is RunState.RUNNING:
        stmt = _RUN_START
    elif change.new in _RUN_ENDED:
        stmt = _RUN_END
    else:
        stmt = _RUN_OTHER
    params = {"b_id": change.run_id, "b_expect": change.expect.value,
              "b_new": change.new.value, "b_at": change.at}  # fmt: skip
    if conn.execute(stmt, params).rowcount != 1:
        raise _Mismatch(run_change=change)


def _flow_upsert(dialect: str, row: dict[str, Any]) -> Executable:
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


def _run_row(record: RunRecord) -> dict[str, Any]:
    """The runs-table row of a new run."""
    return {
        "run_id": record.run_id, "flow": record.flow, "state": record.state.value,
        "params": record.params, "created_at": record.created_at,
        "flow_path": record.flow_path, "flow_hash": record.flow_hash,
    }  # fmt: skip


def _run_record(row: RowMapping) -> RunRecord:
    """A RunRecord from a runs-table row."""
    return RunRecord(**{**row, "state": RunState(row["state"])})


def _attempt_record(row: RowMapping) -> AttemptRecord:
    """An AttemptRecord from a task_attempts row."""
    return AttemptRecord(**{**row, "state": TaskState(row["state"])})


def _aware(at: datetime) -> datetime:
    """*at* in UTC.

    Raises:
        ValueError: *at* is naive.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()}: the store needs aware datetimes")
    return at.astimezone(UTC)


def _first_line(err: BaseException) -> str:
    """The first line of the driver's message (SQLAlchemy's own adds SQL and parameters)."""
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err).strip()
    return text.splitlines()[0] if text else type(err).__name__
