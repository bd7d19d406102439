"""Issue 10, sections 1 and 2 through the Runner: a rule decided early acts while other branches
still run, and a run's leaves decide its state. Airflow's result is noted beside each case.

"While still running" is shown by facts, not by timing: the slow task waits for a file that only
the early-decided task writes, and gives up (failing) after a deadline if it never appears.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rota import Flow, PythonTask
from rota.engine.report import RunSummary
from rota.engine.runner import FlowRef, Runner
from rota.executors.base import Executor
from rota.executors.pool import LocalPoolExecutor
from rota.executors.threads import ThreadExecutor
from rota.model.dag import Dag
from rota.model.schedule import SystemClock
from rota.model.states import RunState, TaskState
from rota.store.base import Store
from rota.store.sql import open_store

DEADLINE = 60.0  # how long the slow task waits for the marker before it fails


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'rota.db'}")
    yield s
    s.close()


def run(store: Store, dag: Dag, tmp_path: Path, kind: str = "threads") -> RunSummary:
    ex: Executor = ThreadExecutor(4) if kind == "threads" else LocalPoolExecutor(3, str(tmp_path))
    try:
        return Runner(store, ex, home=tmp_path, clock=SystemClock()).run(dag, FlowRef(dag.name))
    finally:
        ex.close()


def ok() -> str:
    return "ok"


def boom() -> None:
    raise RuntimeError("boom")


def write_marker(path: str) -> str:
    Path(path).write_text("written")
    return "marked"


def wait_for_marker(path: str) -> str:
    """Finish only once *path* exists: proof that another task ran while this one was running."""
    end = time.monotonic() + DEADLINE
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)
    return "saw it"


# --- section 1: decisions at the first completion that determines them -------------------------


@pytest.mark.parametrize("kind", ["threads", "local"])
def test_one_failed_alert_runs_while_the_other_branches_still_run(
    store: Store, tmp_path: Path, kind: str
) -> None:
    """Airflow: one_failed "does not wait for all upstream tasks": the alert runs at the first
    failure. Here the slow branch can only finish after the alert ran."""
    marker = str(tmp_path / "alerted")
    with Flow("alerting") as f:
        broken = PythonTask("broken", boom)
        slow = PythonTask("slow", wait_for_marker, args=(marker,))
        alert = PythonTask("alert", write_marker, args=(marker,), trigger_rule="one_failed")
        [broken, slow] >> alert
    summary = run(store, f.build(), tmp_path, kind)
    states = {tid: t.state for tid, t in summary.tasks.items()}
    assert states == {
        "broken": TaskState.FAILED,
        "slow": TaskState.SUCCESS,  # it saw the alert's marker: the alert ran before it ended
        "alert": TaskState.SUCCESS,
    }
    slow_rec, alert_rec = summary.tasks["slow"].latest, summary.tasks["alert"].latest
    assert alert_rec.started_at is not None and slow_rec.finished_at is not None
    assert alert_rec.started_at <= slow_rec.finished_at
    # Airflow: the leaf (alert) succeeded, so the run succeeds although broken failed
    assert summary.state is RunState.SUCCESS
    assert summary.failed_tasks == ["broken"]


def test_upstream_failed_is_marked_at_once_and_propagates(store: Store, tmp_path: Path) -> None:
    """Airflow marks an all_success task upstream_failed as soon as one upstream failed, and that
    counts for its own downstreams at once: here `react` (one_failed after `join`) runs while the
    slow upstream of `join` still runs."""
    marker = str(tmp_path / "reacted")
    with Flow("cascade") as f:
        broken = PythonTask("broken", boom)
        slow = PythonTask("slow", wait_for_marker, args=(marker,))
        join = PythonTask("join", ok)  # all_success
        react = PythonTask("react", write_marker, args=(marker,), trigger_rule="one_failed")
        [broken, slow] >> join >> react
    summary = run(store, f.build(), tmp_path)
    states = {tid: t.state for tid, t in summary.tasks.items()}
    assert states == {
        "broken": TaskState.FAILED,
        "slow": TaskState.SUCCESS,
        "join": TaskState.UPSTREAM_FAILED,
        "react": TaskState.SUCCESS,
    }
    join_rec = summary.tasks["join"].latest
    assert join_rec.error_message == (
        "trigger rule all_success: 1 of 2 upstreams ended: 1 failed"
    )  # decided with one upstream still running; recorded as the reason
    assert summary.tasks["join"].attempts == 0
    assert summary.state is RunState.SUCCESS  # Airflow: the only leaf, react, succeeded


def test_one_success_runs_at_the_first_success(store: Store, tmp_path: Path) -> None:
    """Airflow: one_success runs as soon as one upstream succeeded."""
    marker = str(tmp_path / "first")
    with Flow("race") as f:
        fast = PythonTask("fast", ok)
        slow = PythonTask("slow", wait_for_marker, args=(marker,))
        first = PythonTask("first", write_marker, args=(marker,), trigger_rule="one_success")
        [fast, slow] >> first
    summary = run(store, f.build(), tmp_path)
    assert {t.state for t in summary.tasks.values()} == {TaskState.SUCCESS}


def test_always_runs_at_once_without_waiting_for_its_upstreams(
    store: Store, tmp_path: Path
) -> None:
    """Airflow: always has "no dependencies at all": it runs at the start of the run."""
    marker = str(tmp_path / "always")
    with Flow("at_once") as f:
        slow = PythonTask("slow", wait_for_marker, args=(marker,))
        anyway = PythonTask("anyway", write_marker, args=(marker,), trigger_rule="always")
        slow >> anyway
    summary = run(store, f.build(), tmp_path)
    assert {t.state for t in summary.tasks.values()} == {TaskState.SUCCESS}


# --- section 2: the leaves decide the run's state ----------------------------------------------


def build(shape: str) -> Dag:
    with Flow(f"leaves_{shape}") as f:
        extract = PythonTask("extract", ok)
        train = PythonTask("train", boom)
        extract >> train
        if shape == "fallback":  # a one_failed cleanup is the only leaf
            train >> PythonTask("cleanup", ok, trigger_rule="one_failed")
        elif shape == "all_done":  # an all_done report is the only leaf
            train >> PythonTask("report", ok, trigger_rule="all_done")
        elif shape == "fallback_and_default":  # and a default leaf after train
            train >> PythonTask("cleanup", ok, trigger_rule="one_failed")
            train >> PythonTask("deploy", ok)
        elif shape == "failed_fallback":  # the handler fails too
            train >> PythonTask("cleanup", boom, trigger_rule="one_failed")
        # "leaf_failed": train itself is the leaf
    return f.build()


@pytest.mark.parametrize(
    ("shape", "expected", "note"),
    [
        ("fallback", RunState.SUCCESS, "leaf cleanup succeeded"),
        ("all_done", RunState.SUCCESS, "leaf report succeeded"),
        ("fallback_and_default", RunState.FAILED, "leaf deploy is upstream_failed"),
        ("failed_fallback", RunState.FAILED, "leaf cleanup failed"),
        ("leaf_failed", RunState.FAILED, "leaf train failed"),
    ],
)
def test_the_leaves_decide_the_run_state(
    store: Store, tmp_path: Path, shape: str, expected: RunState, note: str
) -> None:
    """Airflow's DagRun.update_state: failed if a leaf failed or is upstream_failed, success if
    every leaf succeeded or was skipped. The expected state is Airflow's, for the reason noted."""
    summary = run(store, build(shape), tmp_path)
    assert summary.state is expected, note
    assert summary.exit_code == (0 if expected is RunState.SUCCESS else 1)
    assert "train" in summary.failed_tasks  # the failure is listed either way
    assert summary.to_json()["failed_tasks"] == summary.failed_tasks


def test_a_skipped_leaf_counts_as_success(store: Store, tmp_path: Path) -> None:
    """Airflow: skipped is among the success states of leaves."""
    with Flow("skipped_leaf") as f:
        a = PythonTask("a", ok)
        a >> PythonTask("only_on_failure", ok, trigger_rule="one_failed")
    summary = run(store, f.build(), tmp_path)
    assert summary.tasks["only_on_failure"].state is TaskState.SKIPPED
    assert summary.tasks["only_on_failure"].latest.error_message == (
        "trigger rule one_failed: 1 of 1 upstreams ended: 1 success"
    )
    assert summary.state is RunState.SUCCESS
    assert summary.failed_tasks == []
