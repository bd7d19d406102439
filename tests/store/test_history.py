"""Store.flow_history on SQLite and PostgreSQL: which runs and attempts ``rota stats`` counts.

Runs are written through the store's own API, attempt by attempt along the state machine, so each
case is exactly the history a runner would have left.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from rota.model.reliability import TaskHistory
from rota.model.states import RunState, TaskState
from rota.store.base import Change, NewAttempt, NewTask, RunChange
from rota.store.sql import SqlStore, open_store

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
T0 = datetime(2024, 5, 1, tzinfo=UTC)
S = TaskState
_clock = itertools.count(1)


def _now() -> datetime:
    return T0 + timedelta(seconds=next(_clock))


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'rota.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with open_store(url) as opened:
        yield opened


class Run:
    """A run written attempt by attempt, each move checked by the store's state machine."""

    def __init__(self, store: SqlStore, flow: str, run_id: str, tasks: list[str]) -> None:
        self.store, self.run_id = store, run_id
        store.create_run(run_id, flow, {}, [NewTask(t, "python", "h") for t in tasks], _now())
        self.rec = {(a.task_id, a.map_index): a for a in store.attempts(run_id)}
        self.state = {key: a.state for key, a in self.rec.items()}
        self.run_state = RunState.QUEUED

    def move(self, task: str, *states: TaskState, index: int = -1, **fields: Any) -> None:
        """Walk the current attempt of (task, index) through *states* (fields on the last)."""
        key = (task, index)
        for n, new in enumerate(states):
            extra = fields if n == len(states) - 1 else {}
            change = Change(self.rec[key].id, self.state[key], new, extra)
            self.store.apply([change], at=_now())
            self.state[key] = new

    def again(self, task: str, index: int = -1) -> None:
        """The current attempt failed and is retried: up_for_retry, and a new try is made."""
        key = (task, index)
        rec = self.rec[key]
        old = Change(rec.id, self.state[key], S.UP_FOR_RETRY, {})
        nxt = NewAttempt(self.run_id, task, rec.try_number + 1, "python", "h", index)
        (self.rec[key],) = self.store.add_attempts([old], [nxt], at=_now())
        self.state[key] = S.SCHEDULED

    def instances(self, task: str, count: int) -> None:
        new = [NewAttempt(self.run_id, task, 1, "python", "h", i) for i in range(count)]
        for rec in self.store.add_attempts([], new, at=_now()):
            self.rec[(task, rec.map_index)] = rec
            self.state[(task, rec.map_index)] = rec.state

    def end(self, *states: RunState) -> None:
        """Move the run through *states*."""
        for new in states:
            change = RunChange(self.run_id, self.run_state, new, _now())
            self.store.apply([], [change], at=_now())
            self.run_state = new


RUN = (S.QUEUED, S.RUNNING)


def _history(store: SqlStore) -> None:
    """Three finished runs of flow f, and runs that must not count."""
    one = Run(store, "f", "r1", ["a", "b", "m"])  # success
    one.end(RunState.RUNNING)
    one.move("a", *RUN)
    one.again("a")  # try 1 failed
    one.move("a", *RUN, S.SUCCESS)  # try 2 succeeded
    one.move("b", *RUN, S.SUCCESS)
    one.move("m", *RUN)
    one.instances("m", 2)
    one.move("m", *RUN, S.SUCCESS, index=0)
    one.move("m", *RUN, index=1)
    one.again("m", index=1)
    one.move("m", *RUN, S.SUCCESS, index=1)
    one.move("m", S.SUCCESS, output_length=2)
    one.end(RunState.SUCCESS)

    two = Run(store, "f", "r2", ["a", "b", "m"])  # failed
    two.end(RunState.RUNNING)
    two.move("a", *RUN)
    two.again("a")
    two.move("a", *RUN, S.FAILED)  # both tries failed
    two.move("b", S.UPSTREAM_FAILED)  # never ran: not a try
    two.move("m", *RUN, S.SUCCESS, output_length=0)  # mapped over an empty list
    two.end(RunState.FAILED)

    three = Run(store, "f", "r3", ["a", "b", "m"])  # success
    three.end(RunState.RUNNING)
    three.move("a", S.QUEUED, S.CACHED)  # a cache hit ran nothing
    three.move("b", *RUN, S.SKIPPED)  # raised Skip: neither success nor failure
    three.move("m", *RUN)
    three.instances("m", 1)
    three.move("m", *RUN, S.INTERRUPTED, index=0)  # its runner died; the same try ran again
    three.move("m", *RUN, S.SUCCESS, index=0)
    three.move("m", S.SUCCESS, output_length=1)
    three.end(RunState.SUCCESS)

    running = Run(store, "f", "r4", ["a", "b", "m"])  # not finished: no outcome yet
    running.end(RunState.RUNNING)
    running.move("a", *RUN)
    running.again("a")
    interrupted = Run(store, "f", "r5", ["a", "b", "m"])
    interrupted.end(RunState.RUNNING, RunState.INTERRUPTED)
    other = Run(store, "g", "r6", ["a"])  # another flow
    other.end(RunState.RUNNING)
    other.move("a", *RUN, S.FAILED)
    other.end(RunState.FAILED)


def test_history_counts_tries_of_finished_runs_and_instances_apart(store: SqlStore) -> None:
    _history(store)
    got = store.flow_history("f", 100)
    assert (got.flow, got.runs, got.succeeded) == ("f", 3, 2)
    assert got.tasks == {
        "a": TaskHistory("a", attempts=4, failures=3, expanded_runs=0),
        "b": TaskHistory("b", attempts=1, failures=0),
        # the mapped task's own rows are the task as a whole; its instances are its tries:
        # r1 two instances (one tried twice), r2 none (an empty list), r3 one (interrupted once)
        "m": TaskHistory(
            "m",
            attempts=3,
            failures=0,
            instance_attempts=4,
            instance_failures=1,
            instances=3,
            expanded_runs=3,
        ),
    }


def test_history_reads_only_the_last_finished_runs(store: SqlStore) -> None:
    _history(store)
    got = store.flow_history("f", 2)  # r3 and r2: r4 is running, r5 interrupted
    assert (got.runs, got.succeeded) == (2, 1)
    assert got.tasks["a"] == TaskHistory("a", attempts=2, failures=2)
    m = got.tasks["m"]
    assert (m.instance_attempts, m.instance_failures, m.instances, m.expanded_runs) == (1, 0, 1, 2)
    assert store.flow_history("f", 1).runs == 1


def test_history_of_a_flow_without_runs_is_empty_and_last_must_be_positive(
    store: SqlStore,
) -> None:
    got = store.flow_history("nothing", 10)
    assert (got.runs, got.succeeded, dict(got.tasks)) == (0, 0, {})
    with pytest.raises(ValueError, match="last"):
        store.flow_history("f", 0)


def test_a_row_in_a_state_rota_does_not_know_is_not_counted_and_breaks_nothing(
    store: SqlStore,
) -> None:
    run = Run(store, "f", "r1", ["a", "b"])
    run.end(RunState.RUNNING)
    run.move("a", *RUN, S.SUCCESS)
    run.move("b", *RUN, S.FAILED)
    run.end(RunState.FAILED)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE task_attempts SET state = 'garbage' WHERE task_id = 'b'"))
    got = store.flow_history("f", 10)
    assert got.tasks["a"] == TaskHistory("a", attempts=1, failures=0)
    assert got.tasks["b"] == TaskHistory("b", attempts=0, failures=0)
