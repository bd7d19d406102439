"""The store's digest of a run and its pages of tasks and runs: the right rows, on SQLite and
PostgreSQL, and through indexes (SQLite's query plans), whatever the run's size."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, text, update

from rota.model.states import TaskState
from rota.store.base import NewTask
from rota.store.browse import RunQuery
from rota.store.sql import SqlStore, open_store
from rota.store.tables import task_attempts

T0 = datetime(2024, 3, 1, tzinfo=UTC)
_ta = task_attempts.c


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/rota.db"
    else:
        url = request.getfixturevalue("postgres_url")
    with open_store(url) as s:
        yield s


def _set(store: SqlStore, task_id: str, state: TaskState, seconds: float, **extra: object) -> None:
    """Give a task's first try *state* and a run time of *seconds* (a fixture, written in SQL)."""
    values = {
        "state": state.value,
        "started_at": T0,
        "finished_at": T0 + timedelta(seconds=seconds),
    }
    with store.engine.begin() as conn:
        conn.execute(
            update(task_attempts)
            .where(_ta.run_id == "r", _ta.task_id == task_id)
            .values(**values, **extra)
        )


def _add_try(
    store: SqlStore, task_id: str, try_number: int, state: TaskState, **extra: object
) -> None:
    row = {"run_id": "r", "task_id": task_id, "try_number": try_number, "state": state.value}
    with store.engine.begin() as conn:
        conn.execute(insert(task_attempts).values(**row, **extra))


@pytest.fixture
def run(store: SqlStore) -> SqlStore:
    """Run ``r``: 40 tasks ``t00``..``t39``; t03 failed, t05 failed then succeeded on try 2,
    t07 took longest (9 s); ``fan`` is mapped over 3 instances, instance 1 failed."""
    tasks = [NewTask(f"t{i:02d}", "python", "h") for i in range(40)]
    store.create_run("r", "f", {}, [*tasks, NewTask("fan", "python", "h")], T0)
    for i in range(40):
        _set(store, f"t{i:02d}", TaskState.SUCCESS, 1.0 + i / 100)
    _set(store, "t03", TaskState.FAILED, 0.5, error_type="ValueError", error_message="bad\nmore")
    _set(store, "t05", TaskState.FAILED, 0.5, error_type="KeyError", error_message="first try")
    _add_try(store, "t05", 2, TaskState.SUCCESS, started_at=T0, finished_at=T0)
    _set(store, "t07", TaskState.SUCCESS, 9.0)
    _set(store, "fan", TaskState.FAILED, 2.0)
    for index in range(3):
        state = TaskState.FAILED if index == 1 else TaskState.SUCCESS
        _add_try(store, "fan", 1, state, map_index=index, error_type="E", error_message=f"i{index}")
    return store


def test_the_digest_counts_latest_attempts_and_names_the_failed_and_slowest(run: SqlStore) -> None:
    d = run.run_digest("r", top=10, slowest=3)
    assert d.tasks == 41
    assert d.states == {"success": 39, "failed": 2}  # t05's retry succeeded: not failed
    assert d.instances == {"success": 2, "failed": 1}
    # a mapped task that failed is named by its failed instances, with their own errors
    assert [(t.name, t.error_type, t.error_message) for t in d.failed] == [
        ("t03", "ValueError", "bad\nmore"),
        ("fan[1]", "E", "i1"),
    ]
    assert d.failed_total == 2
    assert [t.name for t in d.slowest] == ["t07", "fan", "t39"]
    assert d.slowest[0].seconds == pytest.approx(9.0)
    assert d.timed == 41  # every latest attempt with both times; the instances have none
    assert d.seconds_max == pytest.approx(9.0)


def test_the_digest_names_only_the_first_failed_and_counts_the_rest(run: SqlStore) -> None:
    d = run.run_digest("r", top=1)
    assert [t.name for t in d.failed] == ["t03"]
    assert d.failed_total == 2


def test_pages_of_tasks_are_in_the_order_the_run_made_them(run: SqlStore) -> None:
    first = run.task_page("r", limit=4, offset=0)
    assert first.task_ids == ["t00", "t01", "t02", "t03"]
    third = run.task_page("r", limit=4, offset=4)
    assert third.task_ids == ["t04", "t05", "t06", "t07"]
    tries = sorted((r.task_id, r.try_number) for r in third.attempts)
    assert tries == [("t04", 1), ("t05", 1), ("t05", 2), ("t06", 1), ("t07", 1)]
    last = run.task_page("r", limit=4, offset=38)
    assert last.task_ids == ["t38", "t39", "fan"]
    assert last.instance_counts == {"fan": {"count": 3, "success": 2, "failed": 1}}
    shown = sorted(r.map_index for r in last.attempts if r.task_id == "fan")
    assert shown == [-1, 1]  # the task's own row, and only the instance that did not succeed
    assert run.task_page("r", limit=4, offset=41).task_ids == []


def test_a_page_shows_at_most_the_instances_asked_for(run: SqlStore) -> None:
    for index in range(3, 10):
        _add_try(run, "fan", 1, TaskState.FAILED, map_index=index)
    page = run.task_page("r", limit=50, offset=40, instances=4)
    assert sorted(r.map_index for r in page.attempts if r.map_index >= 0) == [1, 3, 4, 5]
    assert page.instance_counts["fan"]["failed"] == 8


def test_pages_of_runs_follow_each_other_newest_first(store: SqlStore) -> None:
    for i in range(7):
        store.create_run(f"run{i}", "f" if i % 2 else "g", {}, [], T0 + timedelta(minutes=i))
    ids = [r.run_id for r in store.page_runs(RunQuery(limit=3))]
    ids += [r.run_id for r in store.page_runs(RunQuery(limit=3, offset=3))]
    ids += [r.run_id for r in store.page_runs(RunQuery(limit=3, offset=6))]
    assert ids == [f"run{i}" for i in reversed(range(7))]
    of_f = store.page_runs(RunQuery(flow="f", limit=2, offset=1))
    assert [r.run_id for r in of_f] == ["run3", "run1"]


def _plan(store: SqlStore, sql: str, **params: object) -> str:
    with store.engine.connect() as conn:
        rows = conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"), params).all()
    return " | ".join(str(row[-1]) for row in rows)


def test_sqlite_reads_a_page_of_tasks_through_the_run_first_index(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/rota.db") as store:
        plan = _plan(
            store,
            "SELECT task_id FROM task_attempts WHERE run_id = :r AND map_index = -1 "
            "AND try_number = 1 ORDER BY id LIMIT 50 OFFSET 100",
            r="r",
        )
    assert "ix_task_attempts_run_first" in plan
    assert "TEMP B-TREE" not in plan  # no sort of the run's rows: the index is in page order


def test_a_try_a_retry_replaced_is_neither_counted_nor_slowest(run: SqlStore) -> None:
    with run.engine.begin() as conn:  # t05's failed first try ran 100 s; its retry succeeded
        conn.execute(
            update(task_attempts)
            .where(_ta.run_id == "r", _ta.task_id == "t05", _ta.try_number == 1)
            .values(finished_at=T0 + timedelta(seconds=100))
        )
    d = run.run_digest("r", slowest=2)
    assert [t.name for t in d.slowest] == ["t07", "fan"]
    assert d.seconds_max == pytest.approx(9.0)
    assert d.timed == 41 and d.seconds_total < 100
