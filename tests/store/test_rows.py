"""A row corrupted through real SQL never takes the other rows down, and is never dropped silently:
reads name it (run or attempt id, and the column or value that is wrong)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import FrozenInstanceError, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from rota.errors import CorruptRow
from rota.model.states import RunState, TaskState
from rota.store.base import AttemptRecord, NewTask
from rota.store.rows import record_maker
from rota.store.sql import SqlStore, open_store
from rota.store.tables import task_attempts
from rota.store.writes import attempt_record

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)
_ids = itertools.count()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    """A real store: a SQLite file, or a fresh database on the test PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/rota.db"
    else:
        url = request.getfixturevalue("postgres_url")
    with open_store(url) as opened:
        yield opened


def _runs(store: SqlStore, n: int) -> list[str]:
    """Create *n* runs, one minute apart (so newest first is the reverse order)."""
    made = []
    for i in range(n):
        run_id = f"run-{next(_ids)}"
        store.create_run(run_id, "f", {"x": i}, [NewTask("t", "python", "h")], T0 + i * _MINUTE)
        made.append(run_id)
    return made


def _sql(store: SqlStore, statement: str, **values: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), values)


def test_list_runs_reports_each_bad_row_and_returns_the_others_in_order(store: SqlStore) -> None:
    ids = _runs(store, 4)
    _sql(store, "UPDATE runs SET state = 'exploded' WHERE run_id = :r", r=ids[1])
    _sql(store, "UPDATE runs SET params = 'null' WHERE run_id = :r", r=ids[2])
    bad: list[CorruptRow] = []
    listed = store.list_runs(on_corrupt=bad.append)
    assert [r.run_id for r in listed] == [ids[3], ids[0]]
    assert [r.params for r in listed] == [{"x": 3}, {"x": 0}]
    by_key = {b.key: b for b in bad}
    assert set(by_key) == {ids[1], ids[2]}
    assert all(b.kind == "run" for b in bad)
    assert "state: 'exploded' is not one of" in by_key[ids[1]].problem
    assert "params: NoneType where a JSON object is expected" in by_key[ids[2]].problem
    assert str(by_key[ids[1]]).startswith(f"run {ids[1]}: unreadable row: state:")


def test_a_bad_row_is_raised_when_nobody_takes_the_report(store: SqlStore) -> None:
    ids = _runs(store, 2)
    _sql(store, "UPDATE runs SET state = 'exploded' WHERE run_id = :r", r=ids[0])
    with pytest.raises(CorruptRow, match=f"^run {ids[0]}: unreadable row: state: 'exploded'"):
        store.list_runs()
    with pytest.raises(CorruptRow, match=f"^run {ids[0]}: "):
        store.get_run(ids[0])
    assert store.get_run(ids[1]).state is RunState.QUEUED


def test_scheduler_reads_name_a_bad_row(store: SqlStore) -> None:
    ids = _runs(store, 2)
    _sql(store, "UPDATE runs SET params = '[1, 2]' WHERE run_id = :r", r=ids[1])
    with pytest.raises(CorruptRow, match=f"^run {ids[1]}: unreadable row: params: list"):
        store.runs_in_states([RunState.QUEUED])


def test_the_limit_counts_a_bad_row_which_is_still_named(store: SqlStore) -> None:
    ids = _runs(store, 4)
    _sql(store, "UPDATE runs SET state = '' WHERE run_id = :r", r=ids[3])
    bad: list[CorruptRow] = []
    listed = store.list_runs(limit=2, on_corrupt=bad.append)
    assert [r.run_id for r in listed] == [ids[2]]
    assert [b.key for b in bad] == [ids[3]]


def test_a_bad_attempt_row_names_the_attempt(store: SqlStore) -> None:
    (run_id,) = _runs(store, 1)
    (attempt,) = store.attempts(run_id)
    _sql(store, "UPDATE task_attempts SET state = 'zombie' WHERE id = :i", i=attempt.id)
    with pytest.raises(CorruptRow, match=f"^attempt {attempt.id}: unreadable row: state: 'zombie'"):
        store.attempts(run_id)


def test_sqlite_garbage_that_does_not_even_decode_names_its_column(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/rota.db") as store:
        ids = _runs(store, 3)
        _sql(store, "UPDATE runs SET params = '{not json' WHERE run_id = :r", r=ids[0])
        _sql(store, "UPDATE runs SET started_at = 'yesterday' WHERE run_id = :r", r=ids[1])
        bad: list[CorruptRow] = []
        listed = store.list_runs(on_corrupt=bad.append)
        assert [r.run_id for r in listed] == [ids[2]]
        problems = {b.key: b.problem for b in bad}
        assert problems[ids[0]].startswith("params: ")
        assert problems[ids[1]].startswith("started_at: ")
        with pytest.raises(CorruptRow, match=f"^run {ids[0]}: unreadable row: params: "):
            store.get_run(ids[0])


# --- records made by setting their slots (rows.record_maker) ------------------------------------


def test_attempts_read_in_bulk_equal_those_made_field_by_field(store: SqlStore) -> None:
    (run_id,) = _runs(store, 1)
    (attempt,) = store.attempts(run_id)
    _sql(
        store,
        "UPDATE task_attempts SET state = 'failed', worker = 'w', exit_code = 3, pokes = 2, "
        "cache_parts = :parts, started_at = :at, output_inline = :blob WHERE id = :i",
        parts='{"a": [1, 2]}',
        at=T0 if store.engine.dialect.name == "postgresql" else "2026-03-01 12:00:00.000000",
        blob=b"\x00\x01",
        i=attempt.id,
    )
    (bulk,) = store.attempts(run_id)
    with store.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM task_attempts WHERE id = :i"), {"i": attempt.id})
        columns = list(row.keys())
    assert set(columns) >= {f.name for f in fields(AttemptRecord)}
    assert bulk.state is TaskState.FAILED and bulk.started_at == T0
    assert (bulk.worker, bulk.exit_code, bulk.pokes) == ("w", 3, 2)
    assert bulk.cache_parts == {"a": [1, 2]} and bulk.output_inline == b"\x00\x01"
    with store.engine.connect() as conn:
        query = select(task_attempts).where(task_attempts.c.id == attempt.id)
        mapping = conn.execute(query).one()._mapping
        assert attempt_record(mapping) == bulk  # the record made by the dataclass's own __init__


@dataclass(frozen=True, slots=True)
class _Pair:
    a: int
    b: str = "-"


def test_a_record_maker_sets_every_field_by_column_name_and_converts() -> None:
    make = record_maker(_Pair, ["b", "extra", "a"], {"a": int})
    made = make(("x", None, "7"))
    assert made == _Pair(7, "x")
    assert made.__class__ is _Pair
    with pytest.raises(FrozenInstanceError):
        made.__setattr__("a", 1)


def test_a_record_maker_without_a_column_uses_the_default_or_refuses() -> None:
    assert record_maker(_Pair, ["a"], {})((1,)) == _Pair(1)
    with pytest.raises(TypeError, match="no column for field 'a'"):
        record_maker(_Pair, ["b"], {})


def test_a_record_maker_refuses_a_class_whose_init_does_more() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    with pytest.raises(TypeError, match="NoSlots: a dataclass with slots"):
        record_maker(NoSlots, ["a"], {})
