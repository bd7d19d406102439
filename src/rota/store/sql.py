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
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import Any, Final

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy import exc as sa_exc

from rota.config import DEFAULT_DB_CONNECT_TIMEOUT
from rota.errors import (
    ConcurrentUpdate,
    LeaseLost,
    NotFound,
    RunExists,
    RunIdTaken,
    StoreError,
    StoreUnavailable,
)
from rota.model.reliability import FlowHistory
from rota.model.secrets import stored_params
from rota.model.states import RUN_INITIAL, TASK_INITIAL, RunState
from rota.store import history, leases, lineage, litewrite, lookup, prune, timing
from rota.store import slots as pool_sql
from rota.store.base import (
    AttemptRecord,
    Change,
    Claim,
    DatasetUse,
    DatasetVersion,
    FlowRecord,
    Lease,
    Liveness,
    NewAttempt,
    NewTask,
    PoolRecord,
    PruneCandidate,
    RunChange,
    RunRecord,
    RunTiming,
    SlotPass,
    SlotRequest,
)
from rota.store.browse import graph_rows
from rota.store.connect import HEAD_REVISION, connect, schema_revision, upgrade, writer
from rota.store.rows import OnCorrupt, read_one, read_records
from rota.store.sqlbrowse import BrowseMethods
from rota.store.tables import flows, run_graphs, runs, task_attempts
from rota.store.transient import is_transient
from rota.store.writes import (
    Mismatch,
    attempt_record,
    check_changes,
    first_line,
    flow_upsert,
    group_changes,
    insert_attempts,
    read_attempts,
    run_record,
    run_row,
    set_owner,
    to_utc,
    update_attempts,
    update_run,
)

_ta = task_attempts.c


def _is_date_clash(err: sa_exc.IntegrityError) -> bool:
    """Whether *err* is the unique (flow, logical date) key: PostgreSQL names the index, SQLite
    the columns."""
    text = str(err.orig).replace(", ", ",")
    return "uq_runs_flow_logical_date" in text or "runs.flow,runs.logical_date" in text


class _DateRace(Exception):
    """Inside create_run: the insert hit the unique (flow, logical date) key."""


def _taken_message(flow: str, holder: str, when: RunTiming) -> str:
    return f"flow {flow!r} has run {holder} for {when.logical_date.isoformat()} already"


TRIGGER_TASK: Final = "(trigger)"
"""The task id under which a run records the dataset versions it was triggered by."""


def open_store(
    url: str,
    *,
    connect_timeout: float = DEFAULT_DB_CONNECT_TIMEOUT,
    statement_timeout: float = 0.0,
) -> SqlStore:
    """Open the store at *url*, creating a SQLite file (0600) and migrating the schema if needed.

    Args:
        url: ``sqlite:///PATH`` or ``postgresql+psycopg://USER@HOST:PORT/DB`` (``postgresql://``
            means psycopg 3 too).
        connect_timeout: PostgreSQL: seconds a connection may take to open (0: no limit).
        statement_timeout: PostgreSQL: seconds after which a statement is cancelled (0: none).

    Raises:
        DatabaseUrlError: the URL is invalid (a :class:`StoreError` and a ``UserError``).
        StoreError: the database cannot be opened (or not in time), or migrating it failed.
    """
    engine = connect(url, connect_timeout=connect_timeout, statement_timeout=statement_timeout)
    store = SqlStore(engine)
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store


class SqlStore(BrowseMethods):
    """The store on SQLite or PostgreSQL; see the module docstring. Make one with open_store()."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._lite = engine.dialect.name == "sqlite"  # apply through the driver (litewrite.py)
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
        row = {"name": name, "path": path, "code_hash": code_hash, "updated_at": to_utc(at)}
        with self._errors(f"record flow {name!r}"), self._write() as conn:
            conn.execute(flow_upsert(conn.dialect.name, row))

    def get_flow(self, name: str) -> FlowRecord | None:
        """The flow record named *name*, if the store has seen it."""
        with self._errors(f"read flow {name!r}"), self._engine.connect() as conn:
            row = conn.execute(select(flows).where(flows.c.name == name)).one_or_none()
        return None if row is None else FlowRecord(**row._mapping)

    def flow_history(self, flow: str, last: int) -> FlowHistory:
        """What the tasks of *flow* did in its last *last* finished runs (store/history.py)."""
        with self._errors(f"read the history of flow {flow!r}"), self._engine.connect() as conn:
            return history.flow_history(conn, flow, last)

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
        timing: RunTiming | None = None,
    ) -> RunRecord:
        """Create a run (``queued``) and one ``scheduled`` attempt per task, in one transaction,
        with the run's graph (each task's ``upstream``) for the UI.

        *params* are kept in the form of :func:`rota.model.secrets.stored_params`: no secret in
        clear (a secret the caller did not mark as a default is marked as given).

        Raises:
            RunExists: *flow* has a run for ``timing.logical_date`` already (nothing written).
            StoreError: *run_id* exists already, or two tasks share an id and map index.
        """
        # no secret is stored in clear, whoever calls (model.secrets; the engine marks defaults)
        record = RunRecord(
            run_id, flow, RUN_INITIAL, stored_params(params), to_utc(at),
            flow_path=flow_path, flow_hash=flow_hash,
        )  # fmt: skip
        if timing is not None:
            record = replace(
                record,
                logical_date=to_utc(timing.logical_date),
                data_interval_start=to_utc(timing.data_interval_start),
                data_interval_end=to_utc(timing.data_interval_end),
                run_type=timing.run_type,
            )
        rows = [
            {"run_id": run_id, "task_id": t.task_id, "map_index": t.map_index, "try_number": 1,
             "state": TASK_INITIAL.value, "operator": t.operator, "code_hash": t.code_hash}
            for t in tasks
        ]  # fmt: skip
        try:
            with self._errors(f"create run {run_id!r}"), self._write() as conn:
                if timing is not None and (taken := self._taken(conn, flow, timing)) is not None:
                    raise RunExists(_taken_message(flow, taken, timing), taken)
                try:
                    conn.execute(insert(runs), run_row(record))
                except sa_exc.IntegrityError as err:
                    if timing is not None and _is_date_clash(err):
                        raise _DateRace from None  # another writer took the date meanwhile
                    raise RunIdTaken(f"run {run_id!r} exists already") from err
                if rows:
                    conn.execute(insert(task_attempts), rows)
                graph = graph_rows([(t.task_id, t.upstream) for t in tasks if t.map_index < 0])
                conn.execute(insert(run_graphs).values(run_id=run_id, graph=graph))
                for uri in timing.triggered_by if timing is not None else ():
                    lineage.add_use(conn, uri, run_id, TRIGGER_TASK, at)
        except _DateRace:  # the transaction is rolled back (PostgreSQL aborted it): look again
            assert timing is not None
            with self._errors(f"read runs of {flow!r}"), self._engine.connect() as conn:
                holder = self._taken(conn, flow, timing) or "?"
            raise RunExists(_taken_message(flow, holder, timing), holder) from None
        return record

    @staticmethod
    def _taken(conn: Connection, flow: str, when: RunTiming) -> str | None:
        found = timing.run_for_date(conn, flow, when.logical_date)
        return None if found is None else found.run_id

    def runs_for_dates(
        self, flow: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[RunRecord]:
        """Runs of *flow* with a logical date in ``[start, end]``, oldest logical date first."""
        with self._errors(f"read runs of {flow!r}"), self._engine.connect() as conn:
            return timing.runs_for_dates(conn, flow, start, end)

    def latest_logical_date(self, flow: str, run_type: str = "scheduled") -> datetime | None:
        """The newest logical date of the runs of *flow* made as *run_type*, if any."""
        with self._errors(f"read runs of {flow!r}"), self._engine.connect() as conn:
            return timing.latest_logical_date(conn, flow, run_type)

    def runs_in_states(
        self, states: Sequence[RunState], flow: str | None = None
    ) -> list[RunRecord]:
        """Runs in one of *states* (of one flow only if given), oldest first."""
        with self._errors("read runs"), self._engine.connect() as conn:
            return timing.runs_in_states(conn, states, flow)

    def take_lock(self, name: str, holder: str, at: datetime, stale_after: float) -> str | None:
        """Hold lock *name* as *holder* if it is free, ours, or stale; else return its holder."""
        with self._errors(f"take lock {name!r}"), self._write() as conn:
            return timing.take_lock(conn, name, holder, at, stale_after)

    def renew_lock(self, name: str, holder: str, at: datetime) -> bool:
        """Heartbeat lock *name*; False if *holder* no longer holds it."""
        with self._errors(f"renew lock {name!r}"), self._write() as conn:
            return timing.renew_lock(conn, name, holder, at)

    def release_lock(self, name: str, holder: str) -> None:
        """Give up lock *name* if *holder* holds it."""
        with self._errors(f"release lock {name!r}"), self._write() as conn:
            timing.release_lock(conn, name, holder)

    def apply(
        self,
        changes: Sequence[Change],
        run_changes: Sequence[RunChange] = (),
        *,
        at: datetime,
        lease: Lease | None = None,
    ) -> None:
        """Commit *changes* and *run_changes* in one transaction, stamping ``committed_at=at``;
        under *lease*, only while its owner holds the run (whose heartbeat becomes *at*).

        Raises:
            InvalidTransition: a change is not allowed by the state machine (nothing written).
            ValueError: a change sets a field outside ATTEMPT_FIELDS, or a time is naive.
            ConcurrentUpdate: a row was not in its expected state (nothing written).
            LeaseLost: another runner holds the run (nothing written).
            StoreUnavailable: the database is out of reach or rolled back for a passing reason.
            StoreError: the database failed (nothing written).
        """
        check_changes(changes, run_changes, at)
        if not changes and not run_changes:
            return
        try:
            with self._errors("apply changes"):
                if self._lite:
                    litewrite.apply(self._engine, changes, run_changes, at, lease)
                    return
                with self._write() as conn:
                    if lease is not None:
                        leases.hold_lease(conn, lease, at)
                    self._apply_in(conn, changes, run_changes, at)
        except leases.LeaseMismatch:
            raise LeaseLost(
                f"run {lease.run_id if lease else '?'} is no longer held by this runner; "
                "nothing was written"
            ) from None
        except Mismatch as err:
            what = self._describe_mismatch(err)
            raise ConcurrentUpdate(f"{what}; nothing was written") from None

    def add_attempts(
        self,
        changes: Sequence[Change],
        new: Sequence[NewAttempt],
        run_changes: Sequence[RunChange] = (),
        *,
        at: datetime,
    ) -> list[AttemptRecord]:
        """Apply *changes* and *run_changes* and insert *new* attempts, in one transaction.

        Raises:
            InvalidTransition, ConcurrentUpdate, ValueError: as for :meth:`apply`.
            StoreError: an attempt with that try number exists already (nothing written).
        """
        check_changes(changes, run_changes, at)
        try:
            with self._errors("add attempts"), self._write() as conn:
                self._apply_in(conn, changes, run_changes, at)
                try:
                    return insert_attempts(conn, new)
                except sa_exc.IntegrityError as err:
                    raise StoreError(f"attempt exists already: {first_line(err)}") from err
        except Mismatch as err:
            raise ConcurrentUpdate(f"{self._describe_mismatch(err)}; nothing was written") from None

    def acquire(self, run_id: str, owner: str, *, expect: str | None, at: datetime) -> bool:
        """Make *owner* the runner of *run_id* if its owner is still *expect* (None: no owner)."""
        with self._errors(f"acquire run {run_id!r}"), self._write() as conn:
            return set_owner(conn, run_id, owner, expect, at)

    def heartbeat(self, run_id: str, owner: str, at: datetime) -> bool:
        """Record that *owner* still drives *run_id*; False if it is no longer the owner."""
        with self._errors(f"heartbeat run {run_id!r}"), self._write() as conn:
            return set_owner(conn, run_id, owner, owner, at)

    def release(self, run_id: str, owner: str) -> None:
        """Give up ownership of *run_id* if *owner* holds it."""
        with self._errors(f"release run {run_id!r}"), self._write() as conn:
            set_owner(conn, run_id, None, owner, None)

    def claim_run(
        self, claim: Claim, owner: str, at: datetime, *, flow_limit: int | None = None
    ) -> bool:
        """Make *owner* the owner of the run of *claim* if it is still as seen, unfinished, and
        (with *flow_limit*) fewer other runs of its flow have an owner (store/leases.py)."""
        with self._errors(f"claim run {claim.run_id!r}"), self._write() as conn:
            return leases.claim_run(conn, claim, owner, at, flow_limit)

    def renew_claims(self, owner: str, run_ids: Sequence[str], at: datetime) -> int:
        """Set the heartbeat of those of *run_ids* that *owner* holds; how many it holds."""
        with self._errors("renew claims"), self._write() as conn:
            return leases.renew_claims(conn, owner, run_ids, at)

    def find_cached(
        self, task_id: str, key: str, *, since: datetime | None = None
    ) -> AttemptRecord | None:
        """The latest succeeded attempt of *task_id* with cache key *key* (committed at or after
        *since*), whose output can be reused; None if there is none."""
        query = (
            select(task_attempts)
            .where(_ta.cache_key == key, _ta.task_id == task_id)
            .where(_ta.state.in_(("success", "cached")))
            .order_by(_ta.committed_at.desc(), _ta.id.desc())
            .limit(1)
        )
        if since is not None:
            query = query.where(_ta.committed_at >= to_utc(since))
        with self._errors("look up the cache"), self._engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else attempt_record(row._mapping)

    def cache_history(self, flow: str, task_id: str, limit: int = 20) -> list[AttemptRecord]:
        """Attempts of *task_id* in runs of *flow* that recorded a cache key, newest first."""
        query = (
            select(task_attempts)
            .join(runs, runs.c.run_id == _ta.run_id)
            .where(runs.c.flow == flow, _ta.task_id == task_id, _ta.cache_parts.is_not(None))
            .order_by(_ta.id.desc())
            .limit(limit)
        )
        with self._errors("read the cache history"), self._engine.connect() as conn:
            return [attempt_record(row._mapping) for row in conn.execute(query)]

    def clear_cache(self, flow: str | None = None, task_id: str | None = None) -> int:
        """Forget cache keys (of one flow and/or task); returns how many entries were dropped."""
        stmt = task_attempts.update().where(_ta.cache_key.is_not(None)).values(cache_key=None)
        if task_id is not None:
            stmt = stmt.where(_ta.task_id == task_id)
        if flow is not None:
            stmt = stmt.where(_ta.run_id.in_(select(runs.c.run_id).where(runs.c.flow == flow)))
        with self._errors("clear the cache"), self._write() as conn:
            return int(conn.execute(stmt).rowcount)

    def add_dataset_version(
        self, uri: str, content_hash: str | None, run_id: str, task_id: str, at: datetime
    ) -> DatasetVersion:
        """Record a new version of dataset *uri* (numbered 1, 2, ... per URI)."""
        with self._errors(f"record a version of {uri}"), self._write() as conn:
            return lineage.add_version(conn, uri, content_hash, run_id, task_id, at)

    def add_dataset_use(self, uri: str, run_id: str, task_id: str, at: datetime) -> DatasetUse:
        """Record that a task read dataset *uri* (its latest version at *at*)."""
        with self._errors(f"record a read of {uri}"), self._write() as conn:
            return lineage.add_use(conn, uri, run_id, task_id, at)

    def dataset_versions(self, uri: str | None = None) -> list[DatasetVersion]:
        """Versions of one dataset (or of all), oldest first."""
        with self._errors("read dataset versions"), self._engine.connect() as conn:
            return lineage.versions(conn, uri)

    def dataset_uses(self, uri: str) -> list[DatasetUse]:
        """Every recorded read of dataset *uri*, oldest first."""
        with self._errors("read dataset uses"), self._engine.connect() as conn:
            return lineage.uses(conn, uri)

    def new_dataset_versions(self, uris: Sequence[str], since: datetime | None) -> dict[str, int]:
        """How many versions each of *uris* got after *since* (all of them if None)."""
        with self._errors("count dataset versions"), self._engine.connect() as conn:
            return lineage.new_versions(conn, uris, since)

    def get_run(self, run_id: str) -> RunRecord:
        """The run *run_id*.

        Raises:
            NotFound: no such run.
        """
        query = select(runs).where(runs.c.run_id == run_id)
        with self._errors(f"read run {run_id!r}"), self._engine.connect() as conn:
            record = read_one(conn, query, runs.c.run_id, run_record, kind="run")
        if record is None:
            raise NotFound(f"no run {run_id!r} in the store")
        return record

    def list_runs(
        self,
        flow: str | None = None,
        limit: int | None = None,
        *,
        on_corrupt: OnCorrupt | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first (then by run id, descending), optionally of one flow only.

        Raises:
            CorruptRow: a run's row cannot be read and *on_corrupt* is None.
        """
        query = select(runs).order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
        if flow is not None:
            query = query.where(runs.c.flow == flow)
        if limit is not None:
            query = query.limit(limit)
        with self._errors("list runs"), self._engine.connect() as conn:
            return read_records(
                conn, query, runs.c.run_id, run_record, kind="run", on_corrupt=on_corrupt
            )

    def run_ids_with_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        """Ids of runs starting with *prefix* (case counts), newest first, at most *limit*."""
        with self._errors("find runs"), self._engine.connect() as conn:
            return lookup.run_ids_with_prefix(conn, prefix, limit)

    def newest_run_id(
        self, flow: str | None = None, states: Sequence[RunState] | None = None
    ) -> str | None:
        """The newest run's id (of *flow*, in one of *states*, when given), if any."""
        with self._errors("find the newest run"), self._engine.connect() as conn:
            return lookup.newest_run_id(conn, flow, states)

    def old_runs(self, before: datetime, flow: str | None = None) -> list[PruneCandidate]:
        """Runs (of *flow*) that ended before *before* and are not queued or running."""
        with self._errors("find old runs"), self._engine.connect() as conn:
            return prune.old_runs(conn, before, flow)

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete the rows of *run_ids* in one transaction; the runs deleted."""
        with self._errors("delete runs"), self._write() as conn:
            return prune.delete_runs(conn, run_ids)

    def set_run_params(
        self, run_id: str, params: Mapping[str, Any], changes: Mapping[str, Any], at: datetime
    ) -> None:
        """Keep *params* as run *run_id*'s parameters and record *changes* on it (one
        transaction)."""
        with self._errors(f"change the parameters of run {run_id!r}"), self._write() as conn:
            lookup.set_params(conn, run_id, params, changes, at)

    def flow_names(self, prefix: str = "", limit: int = 100) -> list[str]:
        """Names of the flows the store knows that start with *prefix*, sorted."""
        with self._errors("list flows"), self._engine.connect() as conn:
            return lookup.flow_names(conn, prefix, limit)

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        """Every attempt of run *run_id*, in creation (id) order.

        Raises:
            CorruptRow: an attempt's row cannot be read.
        """
        query = select(task_attempts).where(_ta.run_id == run_id).order_by(_ta.id)
        with self._errors(f"read attempts of run {run_id!r}"), self._engine.connect() as conn:
            return read_attempts(conn, query)

    def claim_slots(
        self,
        run_id: str,
        wanted: Sequence[SlotRequest],
        *,
        release: Sequence[int],
        free: int,
        live: Liveness,
        at: datetime,
    ) -> SlotPass:
        """One allocation pass for *run_id*, in one transaction (store/slots.py)."""
        with self._errors("claim pool slots"), self._write() as conn:
            return pool_sql.claim(conn, run_id, wanted, release, free, live, at)

    def release_slots(self, run_id: str, owner: str, seqs: Sequence[int] | None = None) -> None:
        """Give back the claims of *run_id* filed by *owner*: those numbered *seqs*, or all."""
        with self._errors("release pool slots"), self._write() as conn:
            pool_sql.release(conn, owner, run_id, seqs)

    def pools(self, live: Liveness) -> list[PoolRecord]:
        """Every pool, by name, with the slots its live claims hold and wait for."""
        with self._errors("read pools"), self._engine.connect() as conn:
            return pool_sql.list_pools(conn, live)

    def set_pool(
        self, name: str, slots: int, *, description: str | None = None, at: datetime
    ) -> PoolRecord:
        """Create pool *name* with *slots* (-1: no limit), or resize it.

        Raises:
            PoolError: a bad name or size (nothing written).
        """
        name, size = pool_sql.check_pool(name, slots)
        with self._errors(f"set pool {name!r}"), self._write() as conn:
            return pool_sql.set_pool(conn, name, size, description, at)

    def delete_pool(self, name: str, live: Liveness) -> None:
        """Delete pool *name*.

        Raises:
            PoolError: ``default_pool``, no such pool, or live claims on it (nothing written).
        """
        with self._errors(f"delete pool {name!r}"), self._write() as conn:
            pool_sql.delete_pool(conn, name, live)

    @staticmethod
    def _apply_in(
        conn: Connection, changes: Sequence[Change], run_changes: Sequence[RunChange], at: datetime
    ) -> None:
        """Write checked changes inside the caller's transaction; raise Mismatch on a miss."""
        for group in group_changes(changes):
            update_attempts(conn, group, at)
        for change in run_changes:
            update_run(conn, change)

    def _describe_mismatch(self, err: Mismatch) -> str:
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
        """Turn SQLAlchemy errors into a one-line StoreError naming the store: a
        StoreUnavailable when the error passes (store/transient.py)."""
        try:
            yield
        except sa_exc.SQLAlchemyError as err:
            kind = StoreUnavailable if is_transient(err) else StoreError
            raise kind(f"cannot {doing} in {self.url}: {first_line(err)}") from err
