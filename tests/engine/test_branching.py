"""Issue 10, section 3: branch and short-circuit tasks through the Runner, both styles, with
Airflow's expected result (BranchPythonOperator / @task.branch, ShortCircuitOperator /
@task.short_circuit) noted beside each case."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rota import BranchTask, Flow, PythonTask, ShortCircuitTask, flow, task
from rota.engine.report import RunSummary
from rota.engine.runner import FlowRef, Runner
from rota.errors import DefinitionError
from rota.executors.base import Executor
from rota.executors.pool import LocalPoolExecutor
from rota.executors.threads import InProcessExecutor, ThreadExecutor
from rota.model.branching import BRANCH_SKIP
from rota.model.dag import Dag
from rota.model.schedule import SystemClock
from rota.model.states import RunState, TaskState
from rota.store.base import Store
from rota.store.sql import open_store
from rota.testing import output_of

S = TaskState


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'rota.db'}")
    yield s
    s.close()


def executor(kind: str, tmp_path: Path) -> Executor:
    if kind == "local":
        return LocalPoolExecutor(2, str(tmp_path))
    return ThreadExecutor(3) if kind == "threads" else InProcessExecutor()


def run(store: Store, dag: Dag, tmp_path: Path, kind: str = "inprocess") -> RunSummary:
    ex = executor(kind, tmp_path)
    try:
        return Runner(store, ex, home=tmp_path, clock=SystemClock()).run(dag, FlowRef(dag.name))
    finally:
        ex.close()


def states(summary: RunSummary) -> dict[str, TaskState]:
    return {tid: t.state for tid, t in summary.tasks.items()}


def ok() -> str:
    return "ok"


# --- @task.branch (TaskFlow) -------------------------------------------------------------------


@task
def score() -> float:
    return 0.95


@task.branch
def pick(accuracy: float, threshold: float) -> str:
    return "deploy" if accuracy >= threshold else "notify"


@task
def deploy() -> str:
    return "deployed"


@task
def notify() -> str:
    return "notified"


@task(trigger_rule="none_failed_min_one_success")
def finish() -> str:
    return "finished"


@task
def strict_join() -> str:
    return "joined"


@flow
def release(threshold: float = 0.9) -> None:
    choice = pick(score(), threshold)
    paths = [deploy(), notify()]
    choice >> paths
    paths >> finish()
    paths >> strict_join()


@pytest.mark.parametrize("kind", ["inprocess", "threads", "local"])
@pytest.mark.parametrize(
    ("threshold", "chosen", "other"), [(0.9, "deploy", "notify"), (0.99, "notify", "deploy")]
)
def test_a_taskflow_branch_runs_the_chosen_path_and_skips_the_other(
    store: Store, tmp_path: Path, kind: str, threshold: float, chosen: str, other: str
) -> None:
    """Airflow: the chosen task runs, the other direct downstream is skipped; a join with
    none_failed_min_one_success runs, an all_success join is skipped; the run succeeds."""
    summary = run(store, release.build({"threshold": threshold}), tmp_path, kind)
    assert states(summary) == {
        "score": S.SUCCESS,
        "pick": S.SUCCESS,
        chosen: S.SUCCESS,
        other: S.SKIPPED,
        "finish": S.SUCCESS,
        "strict_join": S.SKIPPED,
    }
    assert summary.state is RunState.SUCCESS
    assert output_of(summary, "pick") == chosen  # the branch's return value is its output
    skipped = summary.tasks[other].latest
    assert skipped.error_type == BRANCH_SKIP
    assert skipped.error_message == f"not chosen by branch task 'pick' (it chose '{chosen}')"
    assert summary.tasks[other].attempts == 0
    join = summary.tasks["strict_join"].latest
    assert join.error_type is None and join.error_message is not None
    assert join.error_message.startswith("trigger rule all_success:")


# --- BranchTask (operator style) ---------------------------------------------------------------


def several() -> list[str]:
    return ["a", "b"]


def nothing() -> None:
    return None


def stranger() -> str:
    return "elsewhere"


def not_an_id() -> int:
    return 3


def operator_flow(fn: Any, **options: Any) -> Dag:
    with Flow("ops") as f:
        b = BranchTask("choose", fn, **options)
        a_, b_, c_ = PythonTask("a", ok), PythonTask("b", ok), PythonTask("c", ok)
        after_c = PythonTask("after_c", ok)
        b >> [a_, b_, c_]
        c_ >> after_c
        PythonTask("elsewhere", ok)  # in the flow, but not downstream of the branch
    return f.build()


def test_a_branch_may_follow_several_tasks(store: Store, tmp_path: Path) -> None:
    """Airflow: a list of task ids follows each of them; the rest are skipped, and skips
    propagate by the trigger rules (after_c's all_success)."""
    summary = run(store, operator_flow(several), tmp_path)
    assert states(summary) == {
        "choose": S.SUCCESS,
        "a": S.SUCCESS,
        "b": S.SUCCESS,
        "c": S.SKIPPED,
        "after_c": S.SKIPPED,
        "elsewhere": S.SUCCESS,
    }
    assert summary.state is RunState.SUCCESS


def test_a_branch_returning_none_skips_every_direct_downstream(
    store: Store, tmp_path: Path
) -> None:
    """Airflow: None follows no task."""
    summary = run(store, operator_flow(nothing), tmp_path)
    assert {tid: s for tid, s in states(summary).items() if tid in "abc"} == dict.fromkeys(
        "abc", S.SKIPPED
    )
    assert summary.tasks["a"].latest.error_message == (
        "not chosen by branch task 'choose' (it chose no task)"
    )
    assert summary.state is RunState.SUCCESS


@pytest.mark.parametrize(
    ("fn", "needle"),
    [
        (stranger, "branch task 'choose' chose 'elsewhere', not among its direct downstream "
         "tasks (valid ids: 'a', 'b', 'c')"),
        (not_an_id, "branch task 'choose' returned int 3; return a task id, a list of task ids, "
         "or None"),
    ],
)  # fmt: skip
def test_a_branch_choosing_what_it_cannot_fails_naming_the_valid_ids(
    store: Store, tmp_path: Path, fn: Any, needle: str
) -> None:
    """Airflow raises in the branch task ("must contain only valid task_ids"): it fails, and its
    downstreams are upstream_failed; the run fails."""
    summary = run(store, operator_flow(fn, retries=1), tmp_path)
    choose = summary.tasks["choose"]
    assert choose.state is S.FAILED
    assert choose.attempts == 2  # a task failure like any other: the retry policy applies
    assert choose.latest.error_type == "BranchError"
    assert choose.latest.error_message == needle
    assert {tid: s for tid, s in states(summary).items() if tid in "abc"} == dict.fromkeys(
        "abc", S.UPSTREAM_FAILED
    )
    assert summary.state is RunState.FAILED


def join_flow() -> Dag:
    with Flow("empty_branch") as f:
        b = BranchTask("choose", lambda: "work")
        work = PythonTask("work", ok)
        join = PythonTask("join", ok, trigger_rule="none_failed_min_one_success")
        b >> [work, join]
        work >> join
    return f.build()


def test_a_join_right_after_the_branch_is_not_skipped(store: Store, tmp_path: Path) -> None:
    """Airflow's skip_all_except: a direct downstream that is also downstream of a followed
    task runs by its trigger rule (the "empty branch" case)."""
    summary = run(store, join_flow(), tmp_path)
    assert states(summary) == {"choose": S.SUCCESS, "work": S.SUCCESS, "join": S.SUCCESS}


# --- short-circuit -----------------------------------------------------------------------------


def falsy() -> int:
    return 0


def truthy() -> dict[str, int]:
    return {"rows": 3}


def short_flow(fn: Any, **options: Any) -> Dag:
    with Flow("short") as f:
        check = ShortCircuitTask("check", fn, **options)
        step = PythonTask("step", ok)
        report = PythonTask("report", ok, trigger_rule="all_done")
        anyway = PythonTask("anyway", ok, trigger_rule="all_skipped")
        other = PythonTask("other", ok)
        check >> step >> [report, anyway]
        [other, step] >> PythonTask("join", ok, trigger_rule="all_done")
    return f.build()


def test_a_falsy_short_circuit_skips_everything_downstream(store: Store, tmp_path: Path) -> None:
    """Airflow (ignore_downstream_trigger_rules=True, the default): every task downstream is
    skipped, whatever its trigger rule (all_done, all_skipped); tasks not downstream still run."""
    summary = run(store, short_flow(falsy), tmp_path)
    assert states(summary) == {
        "check": S.SUCCESS,
        "step": S.SKIPPED,
        "report": S.SKIPPED,
        "anyway": S.SKIPPED,
        "other": S.SUCCESS,
        "join": S.SKIPPED,
    }
    assert output_of(summary, "check") == 0
    assert summary.tasks["report"].latest.error_message == (
        "short-circuit task 'check' returned a falsy value, which skips every task downstream"
    )
    assert summary.state is RunState.SUCCESS


def test_a_short_circuit_respecting_downstream_rules_skips_only_its_direct_downstreams(
    store: Store, tmp_path: Path
) -> None:
    """Airflow (ignore_downstream_trigger_rules=False): the direct downstreams are skipped; the
    tasks after them follow their own rules (all_done and all_skipped after a skip: they run)."""
    summary = run(store, short_flow(falsy, ignore_downstream_trigger_rules=False), tmp_path)
    assert states(summary) == {
        "check": S.SUCCESS,
        "step": S.SKIPPED,
        "report": S.SUCCESS,
        "anyway": S.SUCCESS,
        "other": S.SUCCESS,
        "join": S.SUCCESS,
    }


def test_a_truthy_short_circuit_skips_nothing(store: Store, tmp_path: Path) -> None:
    """Airflow: a truthy result lets everything run; the value is the task's output."""
    summary = run(store, short_flow(truthy), tmp_path)
    # anyway (all_skipped) is skipped by its own rule: step succeeded
    assert states(summary) == dict.fromkeys(summary.tasks, S.SUCCESS) | {"anyway": S.SKIPPED}
    assert summary.tasks["anyway"].latest.error_type is None
    assert output_of(summary, "check") == {"rows": 3}


@task.short_circuit
def has_rows(n: int) -> int:
    return n


@task
def load(n: int) -> int:
    return n * 2


@flow
def guarded(n: int = 0) -> None:
    load(has_rows(n))


@pytest.mark.parametrize(("n", "load_state"), [(0, S.SKIPPED), (4, S.SUCCESS)])
def test_a_taskflow_short_circuit(
    store: Store, tmp_path: Path, n: int, load_state: TaskState
) -> None:
    summary = run(store, guarded.build({"n": n}), tmp_path, "threads")
    assert states(summary) == {"has_rows": S.SUCCESS, "load": load_state}
    if n:
        assert output_of(summary, "load") == 8


# --- definitions refused, resume ---------------------------------------------------------------


def test_a_branch_cannot_be_cached_or_mapped() -> None:
    with pytest.raises(DefinitionError, match="cannot take cache="), Flow("f"):
        BranchTask("b", ok, cache=True)
    with pytest.raises(DefinitionError, match="cannot take cache="), Flow("f"):
        ShortCircuitTask("s", ok, cache=True)

    @task.branch
    def choose(xs: list[int]) -> str:
        return "x"

    with pytest.raises(DefinitionError, match="cannot be mapped"), Flow("f"):
        choose.map([1, 2])
    with pytest.raises(DefinitionError, match="unknown @task option 'poke'"):
        task.branch(poke=3)
    with pytest.raises(DefinitionError, match="ignore_downstream_trigger_rules must be"), Flow("f"):
        ShortCircuitTask("s", ok, ignore_downstream_trigger_rules="yes")  # type: ignore[arg-type]


def test_a_resume_keeps_what_a_kept_branch_skipped(store: Store, tmp_path: Path) -> None:
    """Airflow: clearing the failed task re-runs it; the branch's earlier choice stands, so the
    task it did not choose stays skipped (it is not run by the resume)."""
    flag = tmp_path / "fixed"

    def flaky_deploy() -> str:
        if not flag.exists():
            raise RuntimeError("not yet")
        return "deployed"

    with Flow("resumed") as f:
        b = BranchTask("choose", lambda: "deploy")
        b >> [PythonTask("deploy", flaky_deploy), PythonTask("notify", ok)]
    dag = f.build()
    first = run(store, dag, tmp_path)
    assert states(first) == {"choose": S.SUCCESS, "deploy": S.FAILED, "notify": S.SKIPPED}
    assert first.state is RunState.FAILED
    flag.write_text("ok")
    ex = InProcessExecutor()
    try:
        runner = Runner(store, ex, home=tmp_path, clock=SystemClock())
        second = runner.resume(first.run_id, dag, FlowRef(dag.name))
    finally:
        ex.close()
    assert states(second) == {"choose": S.SUCCESS, "deploy": S.SUCCESS, "notify": S.SKIPPED}
    assert second.tasks["choose"].attempts == 1 and second.tasks["notify"].attempts == 0
    assert second.state is RunState.SUCCESS
