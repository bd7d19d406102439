"""Pools and priorities as a flow declares them: the options, their checks, and the effective
priority weights of Airflow's three weight rules (checked against a plain transitive walk)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rota import Flow, PythonTask, ShellTask, flow, task
from rota.errors import DefinitionError
from rota.model.dag import Dag
from rota.model.pools import DEFAULT_POOL, PoolUse
from rota.model.priority import WEIGHT_MAX, Priority, WeightRule, effective_weights
from rota.operators.sensors import FileSensor


def noop() -> None:
    return None


def _walk(dag: Dag, tid: str, step: Callable[[str], tuple[str, ...]]) -> set[str]:
    """Every task reachable from *tid* by *step*, transitively (Airflow's flat relatives)."""
    seen: set[str] = set()
    todo = list(step(tid))
    while todo:
        other = todo.pop()
        if other not in seen:
            seen.add(other)
            todo.extend(step(other))
    return seen


def _airflow_weight(dag: Dag, tid: str) -> int:
    """Airflow's priority_weight_total, written the slow, obvious way."""
    spec = dag.tasks[tid]
    rule = spec.priority.rule
    if rule is WeightRule.ABSOLUTE:
        return spec.priority.weight
    if rule is WeightRule.DOWNSTREAM:
        relatives = _walk(dag, tid, dag.downstream)
    else:
        relatives = _walk(dag, tid, lambda t: dag.tasks[t].upstream)
    return spec.priority.weight + sum(dag.tasks[r].priority.weight for r in relatives)


def test_a_task_uses_default_pool_one_slot_and_weight_one_downstream_by_default() -> None:
    with Flow("plain") as f:
        PythonTask("a", noop)
    spec = f.build().tasks["a"]
    assert spec.pool == PoolUse(DEFAULT_POOL, 1)
    assert spec.priority == Priority(1, WeightRule.DOWNSTREAM)


def test_every_kind_of_task_takes_the_pool_and_priority_options() -> None:
    @task(pool="gpu", pool_slots=2, priority_weight=7, weight_rule="absolute")
    def train() -> int:
        return 1

    @flow(max_active_tasks=3)
    def both() -> None:
        train()
        ShellTask("sh", "true", pool="io", priority_weight=-2, weight_rule=WeightRule.UPSTREAM)
        FileSensor("wait", path="/tmp/x", pool="io", pool_slots=3, mode="reschedule")

    dag = both.build()
    assert dag.max_active_tasks == 3
    assert dag.tasks["train"].pool == PoolUse("gpu", 2)
    assert dag.tasks["train"].priority == Priority(7, WeightRule.ABSOLUTE)
    assert dag.tasks["sh"].priority == Priority(-2, WeightRule.UPSTREAM)
    assert dag.tasks["wait"].pool == PoolUse("io", 3)
    assert train.override(pool="cpu").options["pool"] == "cpu"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool": "has space"}, "invalid pool name 'has space'"),
        ({"pool": ""}, "invalid pool name ''"),
        ({"pool": 3}, "invalid pool name 3"),
        ({"pool_slots": 0}, "pool_slots must be an int from 1"),
        ({"pool_slots": True}, "pool_slots must be an int from 1"),
        ({"pool_slots": 1.5}, "pool_slots must be an int from 1"),
        ({"priority_weight": "high"}, "priority_weight must be an int"),
        ({"priority_weight": 2**31}, "priority_weight 2147483648 is outside"),
        ({"weight_rule": "sideways"}, "unknown weight_rule 'sideways' (known: downstream, up"),
    ],
)
def test_bad_pool_and_priority_options_name_the_task(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(DefinitionError) as err, Flow("bad"):
        PythonTask("t", noop, **options)  # type: ignore[arg-type]
    assert message in str(err.value) and "task 't'" in str(err.value)


def test_task_decorator_refuses_an_unknown_option_but_knows_the_pool_ones() -> None:
    with pytest.raises(DefinitionError, match="unknown @task option 'pools'"):
        task(pools="gpu")(noop)
    assert task(pool="gpu", pool_slots=2, priority_weight=3, weight_rule="upstream")(noop)


@pytest.mark.parametrize("value", [0, -1, "4", True])
def test_max_active_tasks_must_be_a_positive_int(value: object) -> None:
    with pytest.raises(DefinitionError, match="max_active_tasks must be an int from 1"):
        Flow("f", max_active_tasks=value)


def test_weights_of_the_three_rules_on_a_diamond_with_a_tail() -> None:
    #   a -> b -> d -> e
    #   a -> c -> d
    with Flow("diamond") as f:
        a = PythonTask("a", noop, priority_weight=1)
        b = PythonTask("b", noop, priority_weight=10)
        c = PythonTask("c", noop, priority_weight=100, weight_rule="upstream")
        d = PythonTask("d", noop, priority_weight=1000, weight_rule="absolute")
        e = PythonTask("e", noop, priority_weight=10000, weight_rule="upstream")
        a >> [b, c] >> d >> e
    weights = effective_weights(f.build())
    assert weights == {
        "a": 1 + 10 + 100 + 1000 + 10000,  # everything below a, each task once
        "b": 10 + 1000 + 10000,  # d and e (transitively), not c
        "c": 100 + 1,  # a only: upstream
        "d": 1000,  # absolute
        "e": 10000 + 1000 + 10 + 100 + 1,  # everything above e, each task once
    }


def test_weights_are_clamped_to_32_bits_like_airflows_db_safe_priority() -> None:
    with Flow("big") as f:
        head = PythonTask("head", noop, priority_weight=WEIGHT_MAX)
        head >> PythonTask("tail", noop, priority_weight=WEIGHT_MAX)
    assert effective_weights(f.build())["head"] == WEIGHT_MAX


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=25), st.integers(min_value=0, max_value=2**32))
def test_effective_weights_equal_the_transitive_sums_on_random_graphs(n: int, seed: int) -> None:
    rng = random.Random(seed)
    rules = list(WeightRule)
    with Flow("random") as f:
        nodes = [
            PythonTask(
                f"t{i}", noop, priority_weight=rng.randint(-5, 50), weight_rule=rng.choice(rules)
            )
            for i in range(n)
        ]
        for i in range(n):
            for j in range(i + 1, n):
                if rng.random() < 0.2:
                    nodes[i] >> nodes[j]
    dag = f.build()
    weights = effective_weights(dag)
    assert weights == {tid: _airflow_weight(dag, tid) for tid in dag.tasks}
