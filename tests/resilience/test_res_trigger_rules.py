"""Trigger rules end to end through the Runner: every rule against every pair of upstream
outcomes (success, failed, skipped, upstream_failed), compared with an oracle written here from
Airflow's semantics (not with rota.model.policies.decide).

A rule decides at the first completion that determines it (tests/model/test_trigger_rules.py
checks every order); here the producers run concurrently, so where the order matters (an
``all_success`` task with one skipped and one failed upstream is skipped or upstream_failed,
whichever it saw first, as in Airflow) the oracle allows both.
"""

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
    "all_skipped",
    "all_done_min_one_success",
    "one_failed",
    "one_success",
    "one_done",
    "none_failed",
    "none_failed_min_one_success",
    "none_skipped",
    "always",
)
RUN, SKIP, UFAIL = "success", "skipped", "upstream_failed"


def _failing(ups: tuple[str, ...]) -> bool:
    return any(u in ("failed", "upstream_failed") for u in ups)


# The state a task with each rule ends in once its upstreams ended as *ups* ("run" = success),
# for outcomes whose order does not matter.
FINAL = {
    "all_success": lambda ups: (
        RUN if all(u == "success" for u in ups) else (UFAIL if _failing(ups) else SKIP)
    ),
    "all_failed": lambda ups: RUN if all(u in ("failed", "upstream_failed") for u in ups) else SKIP,
    "all_done": lambda ups: RUN,
    "always": lambda ups: RUN,
    "all_skipped": lambda ups: RUN if all(u == "skipped" for u in ups) else SKIP,
    "all_done_min_one_success": lambda ups: (
        SKIP if "skipped" in ups else (RUN if "success" in ups else UFAIL)
    ),
    "one_failed": lambda ups: RUN if _failing(ups) else SKIP,
    "one_success": lambda ups: RUN if "success" in ups else (UFAIL if _failing(ups) else SKIP),
    "one_done": lambda ups: RUN if ("success" in ups or "failed" in ups) else SKIP,
    "none_failed": lambda ups: UFAIL if _failing(ups) else RUN,
    "none_failed_min_one_success": lambda ups: (
        UFAIL if _failing(ups) else (RUN if "success" in ups else SKIP)
    ),
    "none_skipped": lambda ups: SKIP if "skipped" in ups else RUN,
}


def oracle(rule: str, ups: tuple[str, ...]) -> set[str]:
    """The states a task with *rule* may end in when its upstreams ended as *ups*, in any order:
    an all_success task marked at its first skip or failure takes whichever came first."""
    if rule == "all_success" and _failing(ups) and "skipped" in ups:
        return {SKIP, UFAIL}
    return {FINAL[rule](ups)}


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
    assert oracle("all_success", ("success", "skipped")) == {SKIP}
    assert oracle("all_success", ("skipped", "upstream_failed")) == {SKIP, UFAIL}
    assert oracle("all_failed", ("failed", "upstream_failed")) == {RUN}
    assert oracle("all_failed", ("failed", "skipped")) == {SKIP}
    assert oracle("one_success", ("skipped", "failed")) == {UFAIL}
    assert oracle("one_success", ("skipped", "skipped")) == {SKIP}
    assert oracle("none_failed", ("skipped", "skipped")) == {RUN}
    assert oracle("none_skipped", ("failed", "upstream_failed")) == {RUN}
    assert oracle("none_failed_min_one_success", ("skipped", "skipped")) == {SKIP}
    assert oracle("one_done", ("upstream_failed", "skipped")) == {SKIP}
    assert oracle("all_done_min_one_success", ("failed", "success")) == {RUN}
    assert len(CASES) == 12 * 16


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
    wrong = {case: (got[case], expected[case]) for case in CASES if got[case] not in expected[case]}
    assert wrong == {}, f"{len(wrong)} of {len(CASES)} (got, expected): {wrong}"
    # a task that ran has one attempt; one decided without running has none
    for rule, a, b in CASES:
        t = summary.tasks[consumer_id(rule, a, b)]
        assert t.attempts == (1 if t.state is TaskState.SUCCESS else 0), (rule, a, b)
    # the leaves decide (Airflow): consumers that ended upstream_failed fail the run
    assert UFAIL in got.values()
    assert summary.state is RunState.FAILED


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
    c_state = summary.tasks["c"].state.value
    assert c_state in oracle(rule, ("skipped", "failed"))
    assert {summary.tasks["d"].state.value} == oracle("all_success", (c_state,))
