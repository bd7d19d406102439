"""The pure part of branching: what a branch's value follows, and what a choice skips (Airflow's
``SkipMixin.skip_all_except`` and ``ShortCircuitOperator``), and the ready set applying it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from rota.errors import BranchError
from rota.model.branching import Choice, branch_ids, descendants, skip_reason, skipped_by
from rota.model.dag import Dag, Decision, ReadySet, TaskSpec
from rota.model.policies import TriggerRule
from rota.model.states import TaskState

S = TaskState


@dataclass(frozen=True)
class NoOp:
    kind: str = "noop"

    def describe(self) -> str:
        return "nothing"

    def code_hash(self) -> str:
        return "0"


def in_order(*ids: str) -> list[str]:
    """*ids* in the graph's topological order (what skipped_by returns them in)."""
    return [t for t in GRAPH.order if t in ids]


def dag(edges: dict[str, tuple[str, ...]], rules: dict[str, str] | None = None) -> Dag:
    rules = rules or {}
    specs = [
        TaskSpec(t, NoOp(), upstream=ups, trigger_rule=TriggerRule(rules.get(t, "all_success")))
        for t, ups in edges.items()
    ]
    return Dag.build("f", specs, {})


# b -> x -> x2; b -> y; b -> join; x -> join; elsewhere is not downstream of b
GRAPH = dag(
    {
        "b": (),
        "x": ("b",),
        "x2": ("x",),
        "y": ("b",),
        "join": ("b", "x"),
        "elsewhere": (),
    },
    rules={"join": "none_failed_min_one_success"},
)
DOWN = GRAPH.downstream("b")


@pytest.mark.parametrize(
    ("value", "follow"),
    [
        ("x", ("x",)),
        (["x", "y"], ("x", "y")),
        (("y", "x", "y"), ("y", "x")),
        ({"y", "x"}, ("x", "y")),
        (None, ()),
        ([], ()),
    ],
)
def test_branch_ids_accepts_an_id_a_list_or_none(value: object, follow: tuple[str, ...]) -> None:
    assert branch_ids(value, DOWN, "b") == follow


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("elsewhere", "chose 'elsewhere', not among its direct downstream tasks"),
        (["x", "x2"], "chose 'x2', not among"),
        (3, "returned int 3; return a task id, a list of task ids, or None"),
        (["x", 3], "returned int 3 among its choices"),
        ({"x": 1}, "returned dict"),
    ],
)
def test_branch_ids_refuses_what_is_not_a_direct_downstream(value: object, needle: str) -> None:
    with pytest.raises(BranchError) as info:
        branch_ids(value, DOWN, "b")
    assert needle in str(info.value)
    if "not among" in needle:
        assert "valid ids: 'x', 'y', 'join'" in str(info.value)


def test_a_branch_without_downstreams_says_so() -> None:
    with pytest.raises(BranchError, match="valid ids: none: it has no downstream tasks"):
        branch_ids("x", (), "b")


def test_skipped_by_a_branch_keeps_a_join_downstream_of_a_followed_task() -> None:
    # Airflow's skip_all_except: join is a direct downstream of b but also downstream of x
    assert skipped_by(GRAPH, "b", Choice(follow=("x",))) == ["y"]
    assert skipped_by(GRAPH, "b", Choice(follow=("y",))) == in_order("x", "join")
    assert skipped_by(GRAPH, "b", Choice(follow=())) == in_order("x", "y", "join")


def test_skipped_by_a_short_circuit() -> None:
    everything = Choice(short_circuit=True, everything=True)
    direct = Choice(short_circuit=True, everything=False)
    assert skipped_by(GRAPH, "b", everything) == in_order("x", "x2", "y", "join")
    assert skipped_by(GRAPH, "b", direct) == in_order("x", "y", "join")
    assert descendants(GRAPH, ["x"]) == {"x", "x2", "join"}


def test_skip_reasons() -> None:
    assert skip_reason("b", Choice(follow=("x", "y"))) == (
        "not chosen by branch task 'b' (it chose 'x', 'y')"
    )
    assert skip_reason("b", Choice(short_circuit=True, everything=False)) == (
        "short-circuit task 'b' returned a falsy value, which skips its direct downstreams"
    )


def test_the_ready_set_skips_before_the_branch_success_counts() -> None:
    rs = ReadySet(GRAPH)
    assert {d.task_id for d in rs.initial()} == {"b", "elsewhere"}
    skipped = rs.skip(skipped_by(GRAPH, "b", Choice(follow=("x",))), "not chosen")
    assert skipped == [Decision("y", S.SKIPPED, chosen=True)]
    assert skipped[0].reason == "not chosen"
    assert rs.done("b", S.SUCCESS) == [Decision("x", S.QUEUED)]
    assert rs.done("x", S.SUCCESS) == [Decision("x2", S.QUEUED), Decision("join", S.QUEUED)]


def test_skip_leaves_decided_tasks_alone_and_cascades_by_the_rules() -> None:
    rs = ReadySet(GRAPH)
    rs.initial()
    everything = skipped_by(GRAPH, "b", Choice(short_circuit=True))
    decided = rs.skip(everything, "short")
    assert [(d.task_id, d.state, d.chosen) for d in decided] == [
        (t, S.SKIPPED, True) for t in in_order("x", "x2", "y", "join")
    ]
    assert rs.skip(["x", "elsewhere"], "again") == []  # x ended; elsewhere is queued already
    assert rs.done("b", S.SUCCESS) == []
    assert rs.is_decided("join") and rs.finished["join"] is S.SKIPPED
