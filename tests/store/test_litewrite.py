"""SqlStore.apply on SQLite runs through the driver (store/litewrite.py): the rows it writes are
those of SQLAlchemy's Connection path, byte for byte, and it fails as that path fails.

The behaviour every store shares (conditional writes, leases, nothing written on a mismatch) is in
test_contract.py, which runs this path on SQLite and the Connection path on PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event

from rota.errors import ConcurrentUpdate, StoreUnavailable
from rota.model.states import RunState, TaskState
from rota.store import litewrite
from rota.store.base import ATTEMPT_FIELDS, Change, Lease, NewTask, RunChange
from rota.store.sql import SqlStore, open_store

T0 = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
EAST = timezone(timedelta(hours=5, minutes=30))

# a value of its column's kind for every field a change may set (times in another zone)
_VALUES: dict[str, Any] = {
    "queued_at": datetime(2024, 3, 1, 18, 0, 1, 7, tzinfo=EAST),
    "dispatched_at": T0 + timedelta(microseconds=1),
    "started_at": T0 + timedelta(seconds=1),
    "finished_at": T0 + timedelta(seconds=2, microseconds=999999),
    "worker": "w-1",
    "exit_code": -9,
    "error_type": "ValueError",
    "error_message": "bad 'value' \u00e9\n<b>",
    "error_traceback": "Traceback ...\n",
    "output_path": "/tmp/out/x.pkl",
    "output_size": 2**40,
    "output_length": 3,
    "output_hash": "ab" * 32,
    "output_serializer": "pickle",
    "output_inline": b"\x00\x80\x04K\x01.\xff",
    "cache_key": "k1",
    "cache_parts": {"code": "h", "inputs": [1, 2.5, None, "x"]},
    "cached_from": 7,
    "log_path": "/logs/t/1.log",
    "first_poke_at": datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC),
    "pokes": 3,
}


def test_every_settable_field_has_a_value_here() -> None:
    assert set(_VALUES) == set(ATTEMPT_FIELDS)


def _store(path: Path) -> SqlStore:
    return open_store(f"sqlite:///{path}")


def _history(store: SqlStore) -> None:
    """The same writes, through whichever path *store* takes: every field, the run's moves and a
    lease renewal; several groups in one transaction."""
    tasks = [NewTask(f"t{i}", "python", "h") for i in range(3)]
    store.create_run("r1", "flow", {}, tasks, T0)
    assert store.acquire("r1", "me", expect=None, at=T0)
    ids = [a.id for a in store.attempts("r1")]
    lease = Lease("r1", "me")
    store.apply(
        [Change(i, TaskState.SCHEDULED, TaskState.QUEUED, {"queued_at": T0}) for i in ids],
        [RunChange("r1", RunState.QUEUED, RunState.RUNNING, T0)],
        at=T0,
        lease=lease,
    )
    running = {k: _VALUES[k] for k in ("dispatched_at", "started_at", "worker", "log_path")}
    ended = {k: v for k, v in _VALUES.items() if k not in running}
    later = T0 + timedelta(seconds=5)
    store.apply(
        [
            Change(ids[0], TaskState.QUEUED, TaskState.RUNNING, running),
            Change(ids[1], TaskState.QUEUED, TaskState.RUNNING, {}),
            Change(ids[0], TaskState.RUNNING, TaskState.FAILED, ended),
        ],
        at=later,
        lease=lease,
    )
    store.apply(
        [Change(ids[1], TaskState.RUNNING, TaskState.SUCCESS, {"output_inline": b""})],
        [RunChange("r1", RunState.RUNNING, RunState.FAILED, later)],
        at=later,
    )


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What the file holds, as the driver reads it (text, not decoded by SQLAlchemy)."""
    db = sqlite3.connect(path)
    try:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("runs", "task_attempts")
        }
    finally:
        db.close()


def test_the_driver_path_writes_the_rows_the_connection_path_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = tmp_path / "fast.db", tmp_path / "slow.db"
    calls: list[int] = []
    real_apply = litewrite.apply

    def counted(*args: Any) -> None:
        calls.append(1)
        real_apply(*args)

    monkeypatch.setattr(litewrite, "apply", counted)
    with _store(fast) as store:
        _history(store)
    assert len(calls) == 3, "SQLite's writes went through the driver"
    with _store(slow) as store:
        monkeypatch.setattr(store, "_lite", False)
        _history(store)
    assert len(calls) == 3, "the second store took SQLAlchemy's Connection path"
    got, want = _rows(fast), _rows(slow)
    assert got == want
    failed = next(r for r in got["task_attempts"] if "failed" in r)
    assert "2024-03-01 12:30:01.000007" in failed, "a time in another zone is stored as UTC"
    assert b"\x00\x80\x04K\x01.\xff" in failed


def test_a_mismatch_in_a_later_group_writes_nothing_of_the_batch(tmp_path: Path) -> None:
    with _store(tmp_path / "r.db") as store:
        store.create_run(
            "r1", "flow", {}, [NewTask("a", "python", "h"), NewTask("b", "p", "h")], T0
        )
        a, b = (x.id for x in store.attempts("r1"))
        before = _rows(tmp_path / "r.db")
        with pytest.raises(ConcurrentUpdate, match=f"attempt {b} is scheduled, expected queued"):
            store.apply(
                [
                    Change(a, TaskState.SCHEDULED, TaskState.QUEUED, {"queued_at": T0}),
                    Change(b, TaskState.QUEUED, TaskState.RUNNING, {"worker": "w"}),
                ],
                at=T0,
            )
        assert _rows(tmp_path / "r.db") == before
        store.apply([Change(a, TaskState.SCHEDULED, TaskState.QUEUED)], at=T0)  # not left locked
        assert [x.state for x in store.attempts("r1")] == [TaskState.QUEUED, TaskState.SCHEDULED]


@pytest.fixture
def impatient(tmp_path: Path) -> Iterator[SqlStore]:
    """A store on a file whose connections wait 50 ms for a lock (the default waits 30 s)."""
    path = tmp_path / "r.db"
    _store(path).close()  # the schema
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    event.listen(engine, "connect", lambda dbapi, _rec: setattr(dbapi, "isolation_level", None))
    with SqlStore(engine) as store:
        yield store


def test_a_write_lock_held_elsewhere_is_unavailable_and_the_write_can_be_tried_again(
    impatient: SqlStore, tmp_path: Path
) -> None:
    impatient.create_run("r1", "flow", {}, [NewTask("a", "python", "h")], T0)
    (attempt,) = impatient.attempts("r1")
    change = Change(attempt.id, TaskState.SCHEDULED, TaskState.QUEUED)
    other = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match=r"cannot apply changes in sqlite:///.*locked"):
            impatient.apply([change], at=T0)
    finally:
        other.execute("ROLLBACK")
        other.close()
    impatient.apply([change], at=T0)
    assert impatient.attempts("r1")[0].state is TaskState.QUEUED


def test_each_set_of_columns_is_compiled_once(tmp_path: Path) -> None:
    with _store(tmp_path / "r.db") as store:
        dialect = store.engine.dialect
        first = litewrite.attempt_update(dialect, frozenset({"queued_at"}))
        assert litewrite.attempt_update(dialect, frozenset({"queued_at"})) is first
        assert first.sql.startswith("UPDATE task_attempts SET ")
        assert first.keys[-2:] == ("b_id", "b_expect")
        assert set(first.keys) == {"committed_at", "queued_at", "state", "b_id", "b_expect"}
