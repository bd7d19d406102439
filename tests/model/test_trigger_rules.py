"""Acceptance (issue 10, section 1): every trigger rule against every outcome of one to three
upstreams, in every completion order, through the ready set.

The expected result comes from an oracle written here from Airflow's meaning, not from
``rota.model.policies.decide``. Airflow's scheduler (``trigger_rule_dep.py``) evaluates a task's
rule on the upstream states it can see: the rule's pass condition runs the task; otherwise, with
``flag_upstream_failed``, a condition that can no longer change marks it ``skipped`` or
``upstream_failed`` at once ("does not wait for all upstream tasks"). So the oracle walks the
completions one by one and reports the first point at which the task runs or is marked, and
what it becomes. Each row checks both: the final state, and that the ready set decides at exactly
that completion (not later, which was Rota's old behaviour of waiting for every upstream, and
not earlier).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from rota.model.dag import Dag, Decision, ReadySet, TaskSpec
from rota.model.policies import TriggerRule
from rota.model.states import TaskState

OUTCOMES = ("success", "failed", "skipped", "upstream_failed")
RUN, SKIP, UFAIL = "run", "skipped", "upstream_failed"

Known = Sequence[str]
"""The outcomes of the upstreams that have ended so far, in the order they ended."""


def failed(x: str) -> bool:
    return x in ("failed", "upstream_failed")  # Airflow's State.failed_states


# --- the oracle: Airflow's rules, rule by rule ---------------------------------------------------
# Each rule is (runs, marked): runs(known, n) is the documented condition for the task to run;
# marked(known, n) is what Airflow sets instead once the condition cannot be met (None: not yet).


def _all_success_marked(known: Known, n: int) -> str | None:
    if any(failed(x) for x in known):
        return UFAIL
    return SKIP if "skipped" in known else None


def _one_success_marked(known: Known, n: int) -> str | None:
    if len(known) < n or "success" in known:
        return None
    return SKIP if all(x == "skipped" for x in known) else UFAIL


def _adm1s_marked(known: Known, n: int) -> str | None:
    if "skipped" in known:  # a skipped upstream is not "done" for this rule
        return SKIP
    if len(known) == n and "success" not in known:
        return UFAIL
    return None


@dataclass(frozen=True)
class Rule:
    runs: Callable[[Known, int], bool]
    marked: Callable[[Known, int], str | None]


AIRFLOW: dict[str, Rule] = {
    # "All upstream tasks have succeeded"
    "all_success": Rule(
        lambda k, n: len(k) == n and all(x == "success" for x in k), _all_success_marked
    ),
    # "All upstream tasks are in a failed or upstream_failed state"
    "all_failed": Rule(
        lambda k, n: len(k) == n and all(failed(x) for x in k),
        lambda k, n: SKIP if any(x in ("success", "skipped") for x in k) else None,
    ),
    # "All upstream tasks are done with their execution"
    "all_done": Rule(lambda k, n: len(k) == n, lambda k, n: None),
    # "All upstream tasks are in a skipped state"
    "all_skipped": Rule(
        lambda k, n: len(k) == n and all(x == "skipped" for x in k),
        lambda k, n: SKIP if any(x != "skipped" for x in k) else None,
    ),
    # "All non-skipped upstream tasks are done and at least one upstream task has succeeded"
    "all_done_min_one_success": Rule(
        lambda k, n: len(k) == n and "skipped" not in k and "success" in k, _adm1s_marked
    ),
    # "At least one upstream task has failed (does not wait for all upstream tasks to be done)"
    "one_failed": Rule(
        lambda k, n: any(failed(x) for x in k),
        lambda k, n: SKIP if len(k) == n and not any(failed(x) for x in k) else None,
    ),
    # "At least one upstream task has succeeded (does not wait for all upstream tasks to be done)"
    "one_success": Rule(lambda k, n: "success" in k, _one_success_marked),
    # "At least one upstream task succeeded or failed"
    "one_done": Rule(
        lambda k, n: "success" in k or "failed" in k,
        lambda k, n: SKIP if len(k) == n and not ("success" in k or "failed" in k) else None,
    ),
    # "All upstream tasks have not failed or upstream_failed"
    "none_failed": Rule(
        lambda k, n: len(k) == n and not any(failed(x) for x in k),
        lambda k, n: UFAIL if any(failed(x) for x in k) else None,
    ),
    # "All upstream tasks have not failed or upstream_failed, and at least one upstream task has
    # succeeded"
    "none_failed_min_one_success": Rule(
        lambda k, n: len(k) == n and not any(failed(x) for x in k) and "success" in k,
        lambda k, n: (
            UFAIL
            if any(failed(x) for x in k)
            else (SKIP if len(k) == n and all(x == "skipped" for x in k) else None)
        ),
    ),
    # "No upstream task is in a skipped state"
    "none_skipped": Rule(
        lambda k, n: len(k) == n and "skipped" not in k,
        lambda k, n: SKIP if "skipped" in k else None,
    ),
    # "No dependencies at all, run this task at any time"
    "always": Rule(lambda k, n: True, lambda k, n: None),
}


def airflow(rule: str, order: Sequence[str]) -> tuple[str, int]:
    """(what the task becomes, after how many upstream completions) when its upstreams end as
    *order*, one after another. Airflow marks before it checks the pass condition."""
    n = len(order)
    for seen in range(n + 1):
        known = order[:seen]
        mark = AIRFLOW[rule].marked(known, n)
        if mark is not None:
            return mark, seen
        if AIRFLOW[rule].runs(known, n):
            return RUN, seen
    raise AssertionError(f"{rule} undecided after {order}")  # every rule decides when all end


def test_the_oracle_on_rows_written_by_hand() -> None:
    """A few rows of Airflow's documented behaviour, so the table does not rest on the oracle."""
    assert airflow("one_failed", ("success", "failed", "success")) == (RUN, 2)
    assert airflow("one_success", ("failed", "success")) == (RUN, 2)
    assert airflow("one_success", ("failed", "skipped")) == (UFAIL, 2)
    assert airflow("all_success", ("success", "failed", "success")) == (UFAIL, 2)
    assert airflow("all_success", ("skipped", "failed")) == (SKIP, 1)
    assert airflow("always", ("failed", "failed")) == (RUN, 0)
    assert airflow("none_failed_min_one_success", ("skipped", "skipped")) == (SKIP, 2)
    assert airflow("none_failed_min_one_success", ("skipped", "success")) == (RUN, 2)
    assert airflow("all_skipped", ("skipped", "success", "skipped")) == (SKIP, 2)
    assert airflow("all_done_min_one_success", ("success", "skipped")) == (SKIP, 2)
    assert airflow("all_done_min_one_success", ("failed", "success")) == (RUN, 2)
    assert airflow("one_done", ("upstream_failed", "skipped")) == (SKIP, 2)
    assert airflow("one_done", ("upstream_failed", "failed")) == (RUN, 2)


# --- the ready set, driven one completion at a time ---------------------------------------------


@dataclass(frozen=True)
class NoOp:
    kind: str = "noop"

    def describe(self) -> str:
        return "nothing"

    def code_hash(self) -> str:
        return "0"


def fan_in(rule: str, n: int) -> Dag:
    ups = [TaskSpec(f"u{i}", NoOp()) for i in range(n)]
    ups_ids = tuple(s.id for s in ups)
    target = TaskSpec("t", NoOp(), upstream=ups_ids, trigger_rule=TriggerRule(rule))
    after = TaskSpec("after", NoOp(), upstream=("t",))  # what t's decision propagates to
    return Dag.build("fan_in", [*ups, target, after], {})


STATE = {
    "success": TaskState.SUCCESS,
    "failed": TaskState.FAILED,
    "skipped": TaskState.SKIPPED,
    "upstream_failed": TaskState.UPSTREAM_FAILED,
}
VERDICT = {TaskState.QUEUED: RUN, TaskState.SKIPPED: SKIP, TaskState.UPSTREAM_FAILED: UFAIL}


def rota(rule: str, order: Sequence[str]) -> tuple[str, int, TaskState | None]:
    """(what the ready set decides for t, after how many completions, and what ``after``, an
    all_success task behind t, became at that moment when t ended without running)."""
    rs = ReadySet(fan_in(rule, len(order)))
    found: list[tuple[str, int, TaskState | None]] = []

    def look(decisions: list[Decision], seen: int) -> None:
        by_id = {d.task_id: d.state for d in decisions}
        if "t" in by_id:
            found.append((VERDICT[by_id["t"]], seen, by_id.get("after")))

    look(rs.initial(), 0)
    for i, outcome in enumerate(order):
        look(rs.done(f"u{i}", STATE[outcome]), i + 1)
    assert len(found) == 1, f"t decided {len(found)} times: {found}"
    return found[0]


def orders(n: int) -> list[tuple[str, ...]]:
    """Every combination of *n* upstream outcomes, in every completion order (as each upstream
    plays the same part, these are all sequences of n outcomes)."""
    out: set[tuple[str, ...]] = set()
    for combo in itertools.combinations_with_replacement(OUTCOMES, n):
        out.update(itertools.permutations(combo))
    assert len(out) == len(OUTCOMES) ** n
    return sorted(out)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("rule", sorted(AIRFLOW))
def test_every_rule_every_outcome_every_order(rule: str, n: int) -> None:
    wrong = {}
    for order in orders(n):
        state, when, after = rota(rule, order)
        expected = airflow(rule, order)
        if (state, when) != expected:
            wrong[order] = {"rota": (state, when), "airflow": expected}
        # a task ended without running counts for its own downstreams at once
        if state == UFAIL:
            assert after is TaskState.UPSTREAM_FAILED, (rule, order)
        elif state == SKIP:
            assert after is TaskState.SKIPPED, (rule, order)
        else:
            assert after is None, (rule, order)
    assert wrong == {}, f"{len(wrong)} of {len(OUTCOMES) ** n} orders differ: {wrong}"


def test_every_rota_rule_has_an_airflow_meaning_here() -> None:
    assert {r.value for r in TriggerRule} == set(AIRFLOW)


def test_a_task_decided_early_is_not_changed_by_later_completions() -> None:
    """one_failed runs at the first failure; the other upstreams' later outcomes change nothing,
    and an all_success task is upstream_failed at the first failure while the rest still run."""
    with_rules = [
        TaskSpec("a", NoOp()),
        TaskSpec("b", NoOp()),
        TaskSpec("c", NoOp()),
        TaskSpec("alert", NoOp(), upstream=("a", "b", "c"), trigger_rule=TriggerRule.ONE_FAILED),
        TaskSpec("join", NoOp(), upstream=("a", "b", "c")),
    ]
    rs = ReadySet(Dag.build("f", with_rules, {}))
    assert {d.task_id for d in rs.initial()} == {"a", "b", "c"}
    first = {d.task_id: d.state for d in rs.done("b", TaskState.FAILED)}
    assert first == {"alert": TaskState.QUEUED, "join": TaskState.UPSTREAM_FAILED}
    assert rs.done("a", TaskState.SUCCESS) == []
    assert rs.done("c", TaskState.SKIPPED) == []
    assert rs.done("alert", TaskState.SUCCESS) == []
    assert rs.finished["join"] is TaskState.UPSTREAM_FAILED
