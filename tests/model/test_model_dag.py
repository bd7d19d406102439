"""The validated graph (``Dag.build``) and the ready-set counter that drives a run."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rota.errors import CycleError, DefinitionError
from rota.model.dag import (
    TASK_ID_MAX,
    Dag,
    Decision,
    Operator,
    ReadySet,
    Ref,
    TaskSpec,
    check_task_id,
    refs_in,
    resolve,
)
from rota.model.policies import TriggerRule, UpstreamTally, decide
from rota.model.states import TaskState

S = TaskState
TERMINAL_OUTCOMES = [S.SUCCESS, S.FAILED, S.SKIPPED, S.UPSTREAM_FAILED]
PROPERTY = settings(max_examples=200, deadline=None, database=None, derandomize=True)


@dataclass(frozen=True)
class NoOp:
    """The smallest operator: the model layer never runs it."""

    kind: str = "noop"

    def describe(self) -> str:
        return "nothing"

    def code_hash(self) -> str:
        return "0"


def spec(
    tid: str, *upstream: str, rule: TriggerRule | str = TriggerRule.ALL_SUCCESS, **kw: object
) -> TaskSpec:
    return TaskSpec(
        id=tid,
        op=NoOp(),
        upstream=tuple(upstream),
        trigger_rule=TriggerRule(rule),
        **kw,  # type: ignore[arg-type]
    )


def build(*specs: TaskSpec, name: str = "f") -> Dag:
    return Dag.build(name, specs, {})


def graph(edges: Mapping[str, Iterable[str]], rules: Mapping[str, str] | None = None) -> Dag:
    """A Dag from ``{task: upstreams}``."""
    rules = rules or {}
    return build(*(spec(t, *ups, rule=rules.get(t, "all_success")) for t, ups in edges.items()))


def assert_valid_cycle(dag_specs: Iterable[TaskSpec], path: tuple[str, ...]) -> None:
    """*path* is a cycle of the graph written in edge direction, first node repeated last."""
    ups = {s.id: set(s.upstream) for s in dag_specs}
    assert len(path) >= 2
    assert path[0] == path[-1]
    assert len(set(path[:-1])) == len(path) - 1, "a simple cycle visits each node once"
    for a, b in itertools.pairwise(path):
        assert a in ups[b], f"{a} -> {b} is not an edge"


def test_noop_is_an_operator() -> None:
    assert isinstance(NoOp(), Operator)


# --- Dag.build: cycles -------------------------------------------------------------------------


def test_cycle_error_names_the_path_in_edge_direction() -> None:
    specs = [spec("a", "c"), spec("b", "a"), spec("c", "b")]  # a >> b >> c >> a
    with pytest.raises(CycleError) as info:
        build(*specs, name="loop")
    path = info.value.path
    assert_valid_cycle(specs, path)
    assert set(path) == {"a", "b", "c"}
    rotations = ["a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c"]
    assert any(r in str(info.value) for r in rotations), str(info.value)
    assert "'loop'" in str(info.value)
    assert isinstance(info.value, DefinitionError)


def test_cycle_path_leaves_out_tasks_outside_the_cycle() -> None:
    # r -> x -> y -> z -> x, and z -> w: r and w are stuck or outside but not on the cycle.
    specs = [spec("r"), spec("x", "r", "z"), spec("y", "x"), spec("z", "y"), spec("w", "z")]
    with pytest.raises(CycleError) as info:
        build(*specs)
    assert_valid_cycle(specs, info.value.path)
    assert set(info.value.path) == {"x", "y", "z"}


def test_cycle_among_downstream_only_tasks() -> None:
    # "a" (the smallest id) is stuck but only downstream of the cycle p <-> q.
    specs = [spec("a", "q"), spec("p", "q"), spec("q", "p")]
    with pytest.raises(CycleError) as info:
        build(*specs)
    assert_valid_cycle(specs, info.value.path)
    assert set(info.value.path) == {"p", "q"}


def test_self_loop() -> None:
    with pytest.raises(CycleError) as info:
        build(spec("a", "a"))
    assert info.value.path == ("a", "a")
    assert "a -> a" in str(info.value)


@given(
    n=st.integers(min_value=1, max_value=8),
    pairs=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=20),
)
@PROPERTY
def test_build_either_orders_or_names_a_real_cycle(n: int, pairs: list[tuple[int, int]]) -> None:
    ups: dict[str, set[str]] = {f"t{i}": set() for i in range(n)}
    for a, b in pairs:
        if a < n and b < n:
            ups[f"t{b}"].add(f"t{a}")  # edge t{a} -> t{b}
    specs = [spec(t, *sorted(u)) for t, u in ups.items()]
    try:
        dag = build(*specs)
    except CycleError as err:
        assert_valid_cycle(specs, err.path)
        return
    pos = {t: i for i, t in enumerate(dag.order)}
    assert sorted(pos) == sorted(ups)
    for down, u in ups.items():
        for up in u:
            assert pos[up] < pos[down]


# --- Dag.build: ids and references -------------------------------------------------------------


def test_duplicate_ids() -> None:
    with pytest.raises(DefinitionError, match="duplicate task id 'a'"):
        build(spec("a"), spec("b"), spec("a"))


@pytest.mark.parametrize(
    "tid",
    ["", "-x", ".x", "a b", "a..b", "x..", "a/b", "a:b", "é", "a\tb", 5, None],
    ids=repr,
)
def test_invalid_ids(tid: object) -> None:
    with pytest.raises(DefinitionError, match="invalid task id"):
        check_task_id(tid)
    if isinstance(tid, str):
        with pytest.raises(DefinitionError, match="invalid task id"):
            build(spec(tid))


def test_id_with_trailing_newline_is_invalid() -> None:
    with pytest.raises(DefinitionError):
        check_task_id("abc\n")


@pytest.mark.parametrize(
    "tid", ["a", "_", "_x", "1st", "a.b", "a-b", "a.b-c_d", "A9", "v1.2.3", "x" * TASK_ID_MAX]
)
def test_valid_ids(tid: str) -> None:
    assert check_task_id(tid) == tid
    assert list(build(spec(tid)).tasks) == [tid]


def test_check_task_id_names_what_it_checks() -> None:
    with pytest.raises(DefinitionError, match="invalid flow name 'a b'"):
        check_task_id("a b", what="flow name")


def test_missing_upstream() -> None:
    with pytest.raises(DefinitionError) as info:
        build(spec("a"), spec("b", "a", "ghost"), name="flowx")
    message = str(info.value)
    assert "'b'" in message
    assert "'ghost'" in message
    assert "'flowx'" in message


# --- Dag: order, edges, downstream -------------------------------------------------------------


def test_topological_order_respects_edges() -> None:
    dag = graph({"d": ["b", "c"], "c": ["a"], "b": ["a"], "a": [], "e": ["d", "a"]})
    pos = {t: i for i, t in enumerate(dag.order)}
    assert len(dag.order) == len(dag) == 5
    for up, down in dag.edges():
        assert pos[up] < pos[down]
    assert sorted(dag.edges()) == sorted(
        [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e"), ("a", "e")]
    )


def test_order_is_stable() -> None:
    edges = {"x": [], "y": [], "z": ["x", "y"], "w": ["x"]}
    assert graph(edges).order == graph(edges).order


def test_downstream_and_params() -> None:
    dag = Dag.build("f", [spec("a"), spec("b", "a"), spec("c", "a")], {"n": 3})
    assert set(dag.downstream("a")) == {"b", "c"}
    assert dag.downstream("b") == ()
    assert dag.params == {"n": 3}
    assert dag.name == "f"


def test_empty_dag() -> None:
    dag = build()
    assert len(dag) == 0
    assert dag.order == ()
    assert ReadySet(dag).initial() == []


def test_data_inputs_come_from_refs_in_args_and_kwargs() -> None:
    s = spec(
        "c",
        "a",
        "b",
        "z",
        args=(Ref("a"), [Ref("b"), 1], (Ref("a"),)),
        kwargs={"m": {"k": Ref("b")}, "n": 2},
    )
    assert s.data_inputs == ("a", "b")  # order of first use, no repeats; "z" is order-only


def test_refs_in_and_resolve() -> None:
    value = {"x": [Ref("a"), (Ref("b"), 3)], "y": "plain"}
    assert sorted(refs_in(value)) == ["a", "b"]
    assert list(refs_in({Ref("s")})) == ["s"]
    assert resolve(value, {"a": 10, "b": 20}) == {"x": [10, (20, 3)], "y": "plain"}


# --- ReadySet ----------------------------------------------------------------------------------


def ids(decisions: list[Decision]) -> dict[str, TaskState]:
    out = {d.task_id: d.state for d in decisions}
    assert len(out) == len(decisions), f"a task decided twice: {decisions}"
    return out


DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def test_initial_decisions_are_the_roots() -> None:
    dag = graph({"r1": [], "r2": [], "x": ["r1"], "y": ["x", "r2"]})
    rs = ReadySet(dag)
    assert ids(rs.initial()) == {"r1": S.QUEUED, "r2": S.QUEUED}
    assert rs.initial() == []  # taken once


def test_done_unlocks_downstream_when_all_upstreams_finished() -> None:
    rs = ReadySet(graph(DIAMOND))
    assert ids(rs.initial()) == {"a": S.QUEUED}
    assert ids(rs.done("a", S.SUCCESS)) == {"b": S.QUEUED, "c": S.QUEUED}
    assert rs.done("b", S.SUCCESS) == []  # d still waits for c
    assert rs.done("c", S.SUCCESS) == [Decision("d", S.QUEUED)]
    assert rs.done("d", S.SUCCESS) == []
    assert dict(rs.finished) == dict.fromkeys("abcd", S.SUCCESS)


def test_failure_cascades_through_a_chain_in_one_call() -> None:
    rs = ReadySet(graph({"a": [], "b": ["a"], "c": ["b"], "d": ["c"]}))
    rs.initial()
    decided = rs.done("a", S.FAILED)
    assert decided == [
        Decision("b", S.UPSTREAM_FAILED),
        Decision("c", S.UPSTREAM_FAILED),
        Decision("d", S.UPSTREAM_FAILED),
    ]
    assert rs.finished["a"] is S.FAILED
    assert rs.finished["d"] is S.UPSTREAM_FAILED


def test_skip_cascades_as_skip() -> None:
    rs = ReadySet(graph({"a": [], "b": ["a"], "c": ["b"]}))
    rs.initial()
    assert ids(rs.done("a", S.SKIPPED)) == {"b": S.SKIPPED, "c": S.SKIPPED}


def test_all_done_task_runs_after_a_failure() -> None:
    dag = graph(
        {"a": [], "b": ["a"], "cleanup": ["a", "b"]},
        rules={"cleanup": "all_done"},
    )
    rs = ReadySet(dag)
    rs.initial()
    assert ids(rs.done("a", S.FAILED)) == {"b": S.UPSTREAM_FAILED, "cleanup": S.QUEUED}


@pytest.mark.parametrize(
    ("outcome", "alert"),
    [
        (S.SUCCESS, S.SKIPPED),
        (S.SKIPPED, S.SKIPPED),
        (S.FAILED, S.QUEUED),
    ],
)
def test_one_failed_alert_runs_only_on_failure(outcome: TaskState, alert: TaskState) -> None:
    dag = graph({"train": [], "alert": ["train"]}, rules={"alert": "one_failed"})
    rs = ReadySet(dag)
    rs.initial()
    assert rs.done("train", outcome) == [Decision("alert", alert)]


def test_one_failed_alert_after_an_upstream_failure_deep_in_the_graph() -> None:
    dag = graph(
        {"a": [], "b": ["a"], "c": ["b"], "alert": ["b", "c"]},
        rules={"alert": "one_failed"},
    )
    rs = ReadySet(dag)
    rs.initial()
    assert rs.done("a", S.SUCCESS) == [Decision("b", S.QUEUED)]
    assert ids(rs.done("b", S.FAILED)) == {"c": S.UPSTREAM_FAILED, "alert": S.QUEUED}


def test_resume_skips_finished_tasks_and_starts_from_the_frontier() -> None:
    rs = ReadySet(graph(DIAMOND), finished={"a": S.SUCCESS, "b": S.SUCCESS})
    assert ids(rs.initial()) == {"c": S.QUEUED}
    assert rs.done("c", S.SUCCESS) == [Decision("d", S.QUEUED)]


def test_resume_from_a_chain_midpoint() -> None:
    chain = {"a": [], "b": ["a"], "c": ["b"], "d": ["c"]}
    rs = ReadySet(graph(chain), finished={"b": S.SUCCESS, "a": S.SUCCESS})
    assert rs.initial() == [Decision("c", S.QUEUED)]


def test_resume_with_everything_finished_has_nothing_to_do() -> None:
    rs = ReadySet(graph(DIAMOND), finished=dict.fromkeys("abcd", S.SUCCESS))
    assert rs.initial() == []


def test_resume_keeps_unfinished_roots() -> None:
    dag = graph({"r1": [], "r2": [], "j": ["r1", "r2"]})
    rs = ReadySet(dag, finished={"r1": S.SUCCESS})
    assert rs.initial() == [Decision("r2", S.QUEUED)]
    assert rs.done("r2", S.SUCCESS) == [Decision("j", S.QUEUED)]


def test_resume_cascades_a_finished_failure() -> None:
    rs = ReadySet(graph({"a": [], "b": ["a"], "c": ["b"]}), finished={"a": S.FAILED})
    assert ids(rs.initial()) == {"b": S.UPSTREAM_FAILED, "c": S.UPSTREAM_FAILED}


def test_resume_decides_each_task_once() -> None:
    # The runner resumes with its SUCCESS tasks as `finished`: an alert (one_failed) is then
    # skipped and a cleanup (all_done) after it must be queued once, not twice.
    dag = graph(
        {"a": [], "alert": ["a"], "cleanup": ["alert"]},
        rules={"alert": "one_failed", "cleanup": "all_done"},
    )
    decisions = ReadySet(dag, finished={"a": S.SUCCESS}).initial()
    assert decisions == [Decision("alert", S.SKIPPED), Decision("cleanup", S.QUEUED)]


@pytest.mark.parametrize("state", [S.SCHEDULED, S.QUEUED, S.RUNNING, S.UP_FOR_RETRY])
def test_done_with_a_non_terminal_state_raises(state: TaskState) -> None:
    rs = ReadySet(graph(DIAMOND))
    rs.initial()
    with pytest.raises(ValueError, match="not a terminal state"):
        rs.done("a", state)
    assert "a" not in rs.finished


def test_resume_with_a_non_terminal_state_raises() -> None:
    with pytest.raises(ValueError, match="not a terminal state"):
        ReadySet(graph(DIAMOND), finished={"a": S.RUNNING})


def test_done_twice_raises() -> None:
    rs = ReadySet(graph(DIAMOND))
    rs.initial()
    rs.done("a", S.SUCCESS)
    with pytest.raises(ValueError, match="already reported"):
        rs.done("a", S.SUCCESS)


def test_done_of_a_cascaded_task_raises() -> None:
    rs = ReadySet(graph({"a": [], "b": ["a"]}))
    rs.initial()
    rs.done("a", S.FAILED)
    with pytest.raises(ValueError, match="already reported"):
        rs.done("b", S.FAILED)


# --- ReadySet: property ------------------------------------------------------------------------

RULES = list(TriggerRule)


@st.composite
def random_dags(draw: st.DrawFn) -> Dag:
    """Random DAGs: edges only from a lower to a higher index, random trigger rules."""
    n = draw(st.integers(min_value=1, max_value=12))
    specs = []
    for j in range(n):
        ups = draw(st.sets(st.integers(0, j - 1), max_size=j)) if j else set()
        rule = draw(st.sampled_from(RULES))
        specs.append(spec(f"t{j}", *(f"t{i}" for i in sorted(ups)), rule=rule))
    return build(*specs)


def tally_of(dag: Dag, tid: str, outcome: Mapping[str, TaskState]) -> UpstreamTally:
    """The counts of *tid*'s upstreams that have ended in *outcome* so far."""
    ends = [outcome[up] for up in dag.tasks[tid].upstream if up in outcome]
    return UpstreamTally(len(dag.tasks[tid].upstream), *(ends.count(s) for s in TERMINAL_OUTCOMES))


def drive(rs: ReadySet, dag: Dag, data: st.DataObject, start: Mapping[str, TaskState]) -> None:
    """Run *rs* to the end in a random order, checking every decision as it comes: each one is
    what the rule says of the upstream outcomes known then, and after every step no undecided
    task's outcome is determined already (decisions come at the first completion that allows)."""
    outcome: dict[str, TaskState] = dict(start)
    decided: set[str] = set(start)
    pending: list[str] = []

    def take(decisions: list[Decision]) -> None:
        for d in decisions:
            assert d.task_id not in decided, f"{d.task_id} decided twice (or was finished)"
            decided.add(d.task_id)
            assert d.state is decide(
                dag.tasks[d.task_id].trigger_rule, tally_of(dag, d.task_id, outcome)
            )
            if d.state is S.QUEUED:
                pending.append(d.task_id)
            else:
                outcome[d.task_id] = d.state
        for tid in set(dag.tasks) - decided:
            verdict = decide(dag.tasks[tid].trigger_rule, tally_of(dag, tid, outcome))
            assert verdict is None, f"{tid} is determined ({verdict}) but was not decided"

    take(rs.initial())
    while pending:
        tid = pending.pop(data.draw(st.integers(0, len(pending) - 1), label="pick"))
        state = data.draw(st.sampled_from(TERMINAL_OUTCOMES), label=f"{tid} ends")
        outcome[tid] = state
        take(rs.done(tid, state))
    assert set(outcome) == set(dag.tasks), "every task is visited"
    assert decided == set(dag.tasks)
    assert dict(rs.finished) == outcome


@given(dag=random_dags(), data=st.data())
@PROPERTY
def test_ready_set_visits_every_task_once_in_dependency_order(
    dag: Dag, data: st.DataObject
) -> None:
    drive(ReadySet(dag), dag, data, {})


@given(dag=random_dags(), data=st.data())
@PROPERTY
def test_ready_set_resume_from_successful_prefix_all_success(dag: Dag, data: st.DataObject) -> None:
    """Resume as the runner does (SUCCESS tasks finished), with the default trigger rule."""
    plain = build(*(spec(t, *s.upstream) for t, s in dag.tasks.items()))
    done = upstream_closed_prefix(plain, data)
    drive(ReadySet(plain, finished=done), plain, data, done)


@given(dag=random_dags(), data=st.data())
@PROPERTY
def test_ready_set_resume_from_successful_prefix_any_rules(dag: Dag, data: st.DataObject) -> None:
    done = upstream_closed_prefix(dag, data)
    drive(ReadySet(dag, finished=done), dag, data, done)


def upstream_closed_prefix(dag: Dag, data: st.DataObject) -> dict[str, TaskState]:
    """A random set of tasks, with all their upstreams, marked SUCCESS."""
    done: dict[str, TaskState] = {}
    for tid in dag.order:
        ups = dag.tasks[tid].upstream
        if all(u in done for u in ups) and data.draw(st.booleans(), label=f"{tid} done"):
            done[tid] = S.SUCCESS
    return done
