"""Trigger rules end to end through the Runner: every rule against every ordered pair of upstream
outcomes (success, failed, skipped, upstream_failed), compared with an oracle written here from
Airflow's semantics (not with rota.model.policies.decide)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from rota import Flow, PythonTask, Skip
from rota.engine.report import RunSummary
from rota.engine.runner import FlowRef, Runner
from rota.executors.base import Executor
from rota.executors.pool import LocalPoolExecutor
from rota.executors.threads import InProcessExecutor, ThreadExecutor
from rota.model.dag import Dag
from rota.model.schedule import SystemClock
from rota.model.states import RunState, TaskState
from rota.store.base import Store
from rota.store.sql import open_store

OUTCOMES = ("success", "failed", "skipped", "upstream_failed")
RULES = (
    "all_success",
    "all_done",
    "all_failed",
    "one_failed",
    "one_success",
    "none_failed",
    "none_skipped",
    "always",
)
RUN, SKIP, UFAIL = "success", "skipped", "upstream_failed"


def oracle(rule: str, ups: tuple[str, ...]) -> str:
    """The state a task with *rule* ends in when its upstreams ended as *ups* ("run" = success)."""
    failed = any(u in ("failed", "upstream_failed") for u in ups)
    if rule == "all_success":
        return RUN if all(u == "success" for u in ups) else (UFAIL if failed else SKIP)
    if rule == "all_failed":
        return RUN if all(u in ("failed", "upstream_failed") for u in ups) else SKIP
    if rule in ("all_done", "always"):
        return RUN
    if rule == "one_failed":
        return RUN if failed else SKIP
    if rule == "one_success":
        return RUN if "success" in ups else (UFAIL if failed else SKIP)
    if rule == "none_failed":
        return UFAIL if failed else RUN
    if rule == "none_skipped":
        return SKIP if "skipped" in ups else RUN
    raise AssertionError(rule)


def ok() -> str:
    return "ok"


def boom() -> None:
    raise RuntimeError("boom")


def skip() -> None:
    raise Skip("nothing to do")


def producers(n: int) -> dict[str, PythonTask]:
    """Producer *n* of each outcome (two of each, so a consumer can have two of the same)."""
    root_fail = PythonTask(f"root_fail_{n}", boom)
    made = {
        "success": PythonTask(f"success_{n}", ok),
        "failed": PythonTask(f"failed_{n}", boom),
        "skipped": PythonTask(f"skipped_{n}", skip),
        "upstream_failed": PythonTask(f"upstream_failed_{n}", ok),
    }
    root_fail >> made["upstream_failed"]
    return made


def consumer_id(rule: str, a: str, b: str) -> str:
    return f"{rule}__{a}__{b}"


CASES = [(rule, a, b) for rule in RULES for a, b in itertools.product(OUTCOMES, repeat=2)]


def rules_flow() -> Dag:
    with Flow("trigger_rules") as f:
        first, second = producers(1), producers(2)
        for rule, a, b in CASES:
            c = PythonTask(consumer_id(rule, a, b), ok, trigger_rule=rule)
            [first[a], second[b]] >> c
    return f.build()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/rota.db")
    yield s
    s.close()


def run(store: Store, dag: Dag, tmp_path: Path, kind: str) -> RunSummary:
    ex: Executor
    if kind == "local":
        ex = LocalPoolExecutor(2, str(tmp_path / "logs"))
    elif kind == "threads":
        ex = ThreadExecutor(4)
    else:
        ex = InProcessExecutor()
    try:
        return Runner(store, ex, home=tmp_path, clock=SystemClock()).run(dag, FlowRef(dag.name))
    finally:
        ex.close()


def test_oracle_table_is_what_the_brief_says() -> None:
    # a few rows written out by hand, so the oracle itself is checked
    assert oracle("all_success", ("success", "skipped")) == SKIP
    assert oracle("all_success", ("skipped", "upstream_failed")) == UFAIL
    assert oracle("all_failed", ("failed", "upstream_failed")) == RUN
    assert oracle("all_failed", ("failed", "skipped")) == SKIP
    assert oracle("one_success", ("skipped", "failed")) == UFAIL
    assert oracle("one_success", ("skipped", "skipped")) == SKIP
    assert oracle("none_failed", ("skipped", "skipped")) == RUN
    assert oracle("none_skipped", ("failed", "upstream_failed")) == RUN
    assert len(CASES) == 8 * 16


@pytest.mark.parametrize("kind", ["inprocess", "threads", "local"])
def test_every_rule_against_every_pair_of_upstream_outcomes(
    store: Store, tmp_path: Path, kind: str
) -> None:
    summary = run(store, rules_flow(), tmp_path, kind)
    states = {tid: t.state.value for tid, t in summary.tasks.items()}
    for n in (1, 2):  # the producers ended as planned
        for outcome in OUTCOMES:
            assert states[f"{outcome}_{n}"] == outcome
    got = {(rule, a, b): states[consumer_id(rule, a, b)] for rule, a, b in CASES}
    expected = {(rule, a, b): oracle(rule, (a, b)) for rule, a, b in CASES}
    wrong = {case: (got[case], expected[case]) for case in CASES if got[case] != expected[case]}
    assert wrong == {}, f"{len(wrong)} of {len(CASES)} (got, expected): {wrong}"
    # a task that ran has one attempt; one decided without running has none
    for rule, a, b in CASES:
        t = summary.tasks[consumer_id(rule, a, b)]
        assert t.attempts == (1 if t.state is TaskState.SUCCESS else 0), (rule, a, b)
    assert summary.state is RunState.FAILED  # failed producers fail the run


@pytest.mark.parametrize("rule", RULES)
def test_a_decided_state_propagates_to_a_default_downstream(
    store: Store, tmp_path: Path, rule: str
) -> None:
    """What each rule decides for (skipped, failed) is what an all_success task after it sees."""
    with Flow("chain") as f:
        p = producers(1)
        c = PythonTask("c", ok, trigger_rule=rule)
        d = PythonTask("d", ok)
        [p["skipped"], p["failed"]] >> c
        c >> d
    summary = run(store, f.build(), tmp_path, "inprocess")
    c_state = oracle(rule, ("skipped", "failed"))
    assert summary.tasks["c"].state.value == c_state
    assert summary.tasks["d"].state.value == oracle("all_success", (c_state,))
