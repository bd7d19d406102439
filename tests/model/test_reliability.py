"""The reliability maths: Wilson intervals, P = prod(1 - p^(r+1)), and the fewest retries for a
target, checked against published values, exact arithmetic and brute force."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rota.model.reliability import (
    FAILED_TRIES,
    TRIED,
    FlowHistory,
    TaskHistory,
    TaskPlan,
    TaskRisk,
    estimate,
    flow_success,
    minimal_retries,
    task_success,
    wilson,
)
from rota.model.states import TaskState

# --- Wilson 95% interval ----------------------------------------------------------------------

# Published Wilson score intervals (Newcombe, Statistics in Medicine 1998, table I, method 3),
# and the textbook small cases; four decimals.
PUBLISHED = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0),
    (0, 10, 0.0, 0.2775),
    (1, 10, 0.0179, 0.4042),
    (5, 10, 0.2366, 0.7634),
]


@pytest.mark.parametrize(("hits", "trials", "low", "high"), PUBLISHED)
def test_wilson_matches_published_intervals(
    hits: int, trials: int, low: float, high: float
) -> None:
    got = wilson(hits, trials)
    assert (round(got.low, 4), round(got.high, 4)) == (low, high)


@given(st.integers(min_value=1, max_value=5000).flatmap(lambda n: st.tuples(st.just(n),
       st.integers(min_value=0, max_value=n))))  # fmt: skip
def test_wilson_holds_the_estimate_inside_zero_one_and_mirrors(case: tuple[int, int]) -> None:
    trials, hits = case
    got = wilson(hits, trials)
    assert 0.0 <= got.low <= hits / trials <= got.high <= 1.0
    assert got.low < got.high
    mirror = wilson(trials - hits, trials)
    assert mirror.low == pytest.approx(1.0 - got.high, abs=1e-12)
    assert mirror.high == pytest.approx(1.0 - got.low, abs=1e-12)
    assert (got.low == 0.0) == (hits == 0)
    assert (got.high == 1.0) == (hits == trials)


def test_wilson_narrows_with_more_trials_and_is_everything_without_any() -> None:
    widths = [wilson(3 * n, 10 * n) for n in (1, 10, 100, 1000)]
    spans = [w.high - w.low for w in widths]
    assert spans == sorted(spans, reverse=True)
    assert all(0.3 in w for w in widths)
    none = wilson(0, 0)
    assert (none.low, none.high) == (0.0, 1.0)


@pytest.mark.parametrize(("hits", "trials"), [(-1, 10), (11, 10), (1, 0)])
def test_wilson_refuses_hits_outside_the_trials(hits: int, trials: int) -> None:
    with pytest.raises(ValueError, match="hits"):
        wilson(hits, trials)


# --- the seed's formula -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "retries", "expected"),
    [
        (Fraction(3, 10), 0, Fraction(7, 10)),
        (Fraction(3, 10), 1, Fraction(91, 100)),
        (Fraction(3, 10), 2, Fraction(973, 1000)),
        (Fraction(1, 2), 3, Fraction(15, 16)),
        (Fraction(0), 5, Fraction(1)),
        (Fraction(1), 5, Fraction(0)),
    ],
)
def test_task_success_is_one_minus_p_to_the_tries(
    p: Fraction, retries: int, expected: Fraction
) -> None:
    assert expected == 1 - p ** (retries + 1)  # the table itself, in exact arithmetic
    assert task_success(float(p), retries) == pytest.approx(float(expected), rel=1e-15)


def test_flow_success_is_the_product_and_a_mapped_task_counts_once_per_instance() -> None:
    tasks = [TaskRisk("a", 0.3, 2), TaskRisk("b", 0.1, 0), TaskRisk("m", 0.2, 1, instances=3)]
    exact = (1 - Fraction(3, 10) ** 3) * (1 - Fraction(1, 10)) * (1 - Fraction(1, 5) ** 2) ** 3
    assert flow_success(tasks) == pytest.approx(float(exact), rel=1e-14)
    assert flow_success([]) == 1.0
    # three instances of one task are three tasks with the same p and retries
    spread = [TaskRisk(f"m{i}", 0.2, 1) for i in range(3)]
    assert flow_success([TaskRisk("m", 0.2, 1, instances=3)]) == pytest.approx(
        flow_success(spread), rel=1e-15
    )


@pytest.mark.parametrize(
    "bad",
    [{"p": -0.1}, {"p": 1.5}, {"p": math.nan}, {"retries": -1}, {"instances": -1.0}],
)
def test_task_risk_refuses_values_outside_their_range(bad: dict[str, float]) -> None:
    values: dict[str, object] = {"task_id": "t", "p": 0.5, "retries": 1, **bad}
    with pytest.raises(ValueError):
        TaskRisk(**values)  # type: ignore[arg-type]


# --- the fewest retries for a target ----------------------------------------------------------


@pytest.mark.parametrize("p", [0.01, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
@pytest.mark.parametrize("target", [0.5, 0.9, 0.95, 0.99, 0.999, 0.999999])
def test_one_task_gets_the_smallest_retries_that_reach_the_target(p: float, target: float) -> None:
    needed = minimal_retries([TaskRisk("t", p, 7)], target, limit=10_000)
    assert needed is not None
    r = needed["t"]
    assert task_success(p, r) >= target
    if r > 0:
        assert task_success(p, r - 1) < target  # one fewer does not reach it: r is minimal
    # the closed form: the least r with p^(r+1) <= 1 - target
    assert r == max(0, math.ceil(math.log(1 - target) / math.log(p) - 1e-9) - 1)


def _vectors(length: int, budget: int) -> Iterator[tuple[int, ...]]:
    """Every vector of *length* retries (each >= 0) whose sum is at most *budget*."""
    if length == 0:
        yield ()
        return
    for first in range(budget + 1):
        for rest in _vectors(length - 1, budget - first):
            yield (first, *rest)


@pytest.mark.parametrize("seed", range(40))
def test_several_tasks_get_the_fewest_retries_in_all_by_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    tasks = [
        TaskRisk(f"t{i}", rng.choice([0.0, rng.uniform(0.01, 0.7)]), 0, rng.choice([1.0, 2.0, 3.0]))
        for i in range(rng.randint(2, 4))
    ]
    target = rng.choice([0.5, 0.8, 0.9, 0.95, 0.99])
    needed = minimal_retries(tasks, target)
    assert needed is not None
    total = sum(needed.values())
    got = flow_success(TaskRisk(t.task_id, t.p, needed[t.task_id], t.instances) for t in tasks)
    assert got >= target
    best_at_total = 0.0
    for combo in _vectors(len(tasks), total):  # every allocation of as many retries or fewer
        chosen = [
            TaskRisk(t.task_id, t.p, r, t.instances) for t, r in zip(tasks, combo, strict=True)
        ]
        value = flow_success(chosen)
        if sum(combo) < total:
            assert value < target, combo  # fewer retries in all never reach the target
        else:
            best_at_total = max(best_at_total, value)
    assert got == pytest.approx(best_at_total, rel=1e-12)  # none of as many retries does better
    assert all(needed[t.task_id] == 0 for t in tasks if t.p == 0.0)


def test_ties_go_to_the_task_listed_first() -> None:
    tasks = [TaskRisk("b", 0.5, 0), TaskRisk("a", 0.5, 0)]
    # one retry on either task gives 0.75 * 0.5 = 0.375: the first listed gets it
    assert minimal_retries(tasks, 0.375) == {"b": 1, "a": 0}


def test_the_current_retries_do_not_matter_and_a_certain_flow_needs_none() -> None:
    assert minimal_retries([TaskRisk("t", 0.3, 9)], 0.9) == {"t": 1}
    assert minimal_retries([TaskRisk("t", 0.0, 3), TaskRisk("u", 0.0, 0)], 1.0) == {"t": 0, "u": 0}
    assert minimal_retries([], 0.99) == {}


def test_a_task_that_always_fails_or_needs_too_many_retries_makes_the_target_unreachable() -> None:
    assert minimal_retries([TaskRisk("ok", 0.1, 0), TaskRisk("dead", 1.0, 3)], 0.5) is None
    # p = 0.99 needs 688 tries for 0.999 (0.99^688 <= 0.001 < 0.99^687): over 100 retries
    assert minimal_retries([TaskRisk("t", 0.99, 0)], 0.999) is None
    assert minimal_retries([TaskRisk("t", 0.99, 0)], 0.999, limit=700) == {"t": 687}
    assert minimal_retries([TaskRisk("t", 0.3, 0)], 0.99, limit=0) is None
    assert minimal_retries([TaskRisk("t", 0.3, 0)], 0.7, limit=0) == {"t": 0}


@pytest.mark.parametrize("target", [0.0, -0.5, 1.5, math.nan])
def test_a_target_outside_zero_one_is_refused(target: float) -> None:
    with pytest.raises(ValueError, match="target"):
        minimal_retries([TaskRisk("t", 0.3, 0)], target)


# --- from history to an estimate --------------------------------------------------------------


def test_tried_states_are_those_with_an_outcome_and_failed_ones_a_subset() -> None:
    assert {s.value for s in TRIED} == {"success", "failed", "up_for_retry"}
    assert {s.value for s in FAILED_TRIES} == {"failed", "up_for_retry"}
    assert TaskState.CACHED not in TRIED  # a cache hit ran nothing


def test_estimate_counts_a_mapped_tasks_instances_and_leaves_out_the_unmeasured() -> None:
    history = FlowHistory(
        "f",
        runs=10,
        succeeded=7,
        tasks={
            "a": TaskHistory("a", attempts=20, failures=6),
            # its own rows are the task as a whole, not tries: only the instances count
            "m": TaskHistory(
                "m",
                10,
                1,
                instance_attempts=40,
                instance_failures=8,
                instances=30,
                expanded_runs=10,
            ),
            "gone": TaskHistory("gone", attempts=5, failures=5),  # no longer in the flow
        },
    )
    plans = {"a": TaskPlan(2), "m": TaskPlan(1, mapped=True), "new": TaskPlan(0)}
    est = estimate(history, plans, target=0.9)
    a, m, new = est.tasks
    assert (a.task_id, a.attempts, a.failures, a.p) == ("a", 20, 6, 0.3)
    assert a.interval == wilson(6, 20)
    assert a.success == pytest.approx(1 - 0.3**3, rel=1e-15)
    assert (m.attempts, m.failures, m.p, m.instances, m.mapped) == (40, 8, 0.2, 3.0, True)
    assert m.success == pytest.approx((1 - 0.2**2) ** 3, rel=1e-15)
    assert (new.p, new.interval, new.success, new.needed) == (None, None, None, None)
    assert est.unmeasured == ("new",)
    assert est.predicted == pytest.approx((1 - 0.3**3) * (1 - 0.2**2) ** 3, rel=1e-14)
    assert est.without_retries == pytest.approx(0.7 * 0.8**3, rel=1e-14)
    assert (est.runs, est.succeeded, est.observed) == (10, 7, 0.7)
    assert est.observed_interval == wilson(7, 10)
    needed = minimal_retries([TaskRisk("a", 0.3, 0), TaskRisk("m", 0.2, 0, 3.0)], 0.9)
    assert needed is not None
    assert (a.needed, m.needed) == (needed["a"], needed["m"])
    assert est.needed_success is not None and est.needed_success >= 0.9


def test_estimate_of_an_unreachable_target_gives_no_recommendation() -> None:
    history = FlowHistory("f", 4, 0, {"dead": TaskHistory("dead", attempts=8, failures=8)})
    est = estimate(history, {"dead": TaskPlan(1)}, target=0.5)
    (dead,) = est.tasks
    assert (dead.p, dead.success, dead.needed, est.needed_success) == (1.0, 0.0, None, None)
    assert (est.predicted, est.observed) == (0.0, 0.0)
