"""Authoring flows in both styles: TaskFlow (``@flow``/``@task``) and operator (``with Flow``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rota import Flow, PythonTask, RetryPolicy, ShellTask, TriggerRule, flow, task
from rota.errors import CycleError, DefinitionError, ParameterError, PolicyError
from rota.model.builder import FlowBuilder
from rota.model.dag import REQUIRED, Dag, ParamSpec, Ref
from rota.model.flows import FlowFunction
from rota.model.params import merge_params, parse_param
from rota.operators.base import ExecContext
from rota.operators.python import PythonOp, TaskFunction
from rota.operators.shell import ShellOp

# --- tasks used by the flows below -------------------------------------------------------------


@task
def load() -> list[int]:
    return [1, 2, 3]


@task
def double(xs: list[int]) -> list[int]:
    return [2 * x for x in xs]


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def combine(parts: Any) -> Any:
    return parts


@task
def named(task_id: str) -> str:
    return task_id


@task
def with_ctx(x: int, ctx: ExecContext) -> str:
    return f"{ctx.task_id}:{x}"


def plain(*args: Any, **kwargs: Any) -> None:
    return None


def upstream(dag: Dag, tid: str) -> set[str]:
    return set(dag.tasks[tid].upstream)


# --- TaskFlow style ----------------------------------------------------------------------------


def test_calling_tasks_in_a_flow_builds_data_edges() -> None:
    @flow
    def pipeline() -> None:
        xs = load()
        ys = double(xs)
        add(ys, 1)

    dag = pipeline.build()
    assert dag.name == "pipeline"
    assert set(dag.tasks) == {"load", "double", "add"}
    assert upstream(dag, "load") == set()
    assert dag.tasks["double"].upstream == ("load",)
    assert dag.tasks["double"].args == (Ref("load"),)
    assert dag.tasks["double"].data_inputs == ("load",)
    assert dag.tasks["add"].args == (Ref("double"), 1)
    assert dag.order == ("load", "double", "add")


def test_keyword_arguments_make_data_edges_too() -> None:
    @flow
    def kw() -> None:
        add(x=load(), y=2)

    dag = kw.build()
    assert dag.tasks["add"].kwargs == {"x": Ref("load"), "y": 2}
    assert upstream(dag, "add") == {"load"}


def test_repeated_calls_get_numbered_ids() -> None:
    @flow
    def many() -> None:
        load()
        load()
        load()

    assert list(many.build().tasks) == ["load", "load__1", "load__2"]


def test_building_twice_gives_the_same_ids() -> None:
    @flow
    def again() -> None:
        double(load())
        load()

    assert list(again.build().tasks) == list(again.build().tasks) == ["load", "double", "load__1"]


def test_task_id_override_at_call() -> None:
    @flow
    def custom() -> None:
        first = load(task_id="first")
        double(first)
        load()

    dag = custom.build()
    assert set(dag.tasks) == {"first", "double", "load"}
    assert upstream(dag, "double") == {"first"}


def test_override_method() -> None:
    renamed = load.override(task_id="extract")
    assert isinstance(renamed, TaskFunction)
    assert "task_id" not in load.options  # the original is unchanged

    @flow
    def over() -> None:
        double(renamed())
        load.override(retries=2)()

    dag = over.build()
    assert set(dag.tasks) == {"extract", "double", "load"}
    assert upstream(dag, "double") == {"extract"}
    assert dag.tasks["load"].retry.max_attempts == 3
    assert dag.tasks["extract"].retry.max_attempts == 1


def test_a_task_parameter_named_task_id_is_an_argument() -> None:
    @flow
    def tid() -> None:
        named(task_id="x")

    dag = tid.build()
    assert list(dag.tasks) == ["named"]
    assert dag.tasks["named"].kwargs == {"task_id": "x"}


def test_list_and_dict_arguments_are_data_edges_to_every_element() -> None:
    @flow
    def fan_in() -> None:
        a, b, c = load(), load(), load()
        combine([a, b])
        combine({"left": b, "right": c, "k": 7})
        combine([(a, {"deep": c})])

    dag = fan_in.build()
    assert upstream(dag, "combine") == {"load", "load__1"}
    assert dag.tasks["combine"].args == ([Ref("load"), Ref("load__1")],)
    assert upstream(dag, "combine__1") == {"load__1", "load__2"}
    assert dag.tasks["combine__1"].args == (
        {"left": Ref("load__1"), "right": Ref("load__2"), "k": 7},
    )
    assert upstream(dag, "combine__2") == {"load", "load__2"}
    assert set(dag.tasks["combine__2"].data_inputs) == {"load", "load__2"}


def test_flow_params_from_signature_defaults() -> None:
    @flow
    def params(n: int = 3, label: str = "x") -> None:
        add(n, 1)

    assert params.params == (ParamSpec("n", 3), ParamSpec("label", "x"))
    dag = params.build()
    assert dag.params == {"n": 3, "label": "x"}
    assert dag.tasks["add"].args == (3, 1)
    dag5 = params.build({"n": 5})
    assert dag5.params == {"n": 5, "label": "x"}
    assert dag5.tasks["add"].args == (5, 1)


def test_unknown_param_is_a_parameter_error() -> None:
    @flow
    def params(n: int = 3) -> None:
        load()

    with pytest.raises(ParameterError) as info:
        params.build({"m": 1})
    assert "'m'" in str(info.value)
    assert "parameters: n" in str(info.value)


def test_required_param_missing() -> None:
    @flow
    def needs(day: str) -> None:
        combine(day)

    assert needs.params == (ParamSpec("day", REQUIRED),)
    with pytest.raises(ParameterError, match="'day'"):
        needs.build()
    assert needs.build({"day": "2024-01-01"}).tasks["combine"].args == ("2024-01-01",)


def test_flow_decorator_options() -> None:
    @flow(name="nightly", description="every night")
    def body() -> None:
        load()

    assert isinstance(body, FlowFunction)
    assert body.name == "nightly"
    assert body.description == "every night"
    assert body.build().name == "nightly"

    @flow
    def documented() -> None:
        """Trains the model."""
        load()

    assert documented.description == "Trains the model."


def test_flow_with_star_args_is_refused() -> None:
    def varargs(*xs: int) -> None:
        return None

    with pytest.raises(DefinitionError, match=r"\*args"):
        flow(varargs)


def test_invalid_flow_names() -> None:
    with pytest.raises(DefinitionError, match="flow name"):
        flow(name="bad name")(plain)
    with pytest.raises(DefinitionError, match="flow name"):
        Flow("a..b")


def test_flow_body_errors_propagate_and_leave_no_open_flow() -> None:
    @flow
    def broken() -> None:
        load()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        broken.build()
    assert FlowBuilder.current() is None
    assert load() == [1, 2, 3]  # plain call again: no flow is open


def test_task_outside_a_flow_is_the_plain_function() -> None:
    assert load() == [1, 2, 3]
    assert add(2, 3) == 5
    assert double([1, 2]) == [2, 4]
    assert load.__name__ == "load"
    assert load.__wrapped__() == [1, 2, 3]


def test_task_call_with_wrong_arguments_names_the_task() -> None:
    @flow
    def missing() -> None:
        add(1)

    with pytest.raises(DefinitionError) as info:
        missing.build()
    assert "task 'add'" in str(info.value)
    assert "'y'" in str(info.value)

    @flow
    def extra() -> None:
        add(1, 2, z=3)

    with pytest.raises(DefinitionError, match="task 'add'"):
        extra.build()


def test_ctx_parameter_is_not_passed_by_the_author() -> None:
    @flow
    def uses_ctx() -> None:
        with_ctx(load())

    dag = uses_ctx.build()
    op = dag.tasks["with_ctx"].op
    assert isinstance(op, PythonOp)
    assert op.takes_ctx
    assert dag.tasks["with_ctx"].kwargs == {}
    assert not dag.tasks["load"].op.takes_ctx  # type: ignore[attr-defined]


def test_passing_ctx_explicitly_is_refused() -> None:
    @flow
    def explicit() -> None:
        with_ctx(1, ctx=None)

    with pytest.raises(DefinitionError, match="'ctx'"):
        explicit.build()


def test_ctx_task_still_checks_its_other_arguments() -> None:
    @flow
    def no_x() -> None:
        with_ctx()

    with pytest.raises(DefinitionError, match="task 'with_ctx'"):
        no_x.build()


def test_task_options_reach_the_spec() -> None:
    @task(retries=3, timeout=60, tags=["ml", "gpu"], trigger_rule="all_done")
    def train() -> None:
        return None

    policy = RetryPolicy(max_attempts=5, delay=timedelta(seconds=2), backoff=2.0)

    @task(retries=policy, timeout=timedelta(minutes=5), tags="etl")
    def fetch() -> None:
        return None

    @task(retries=1, retry_delay=timedelta(seconds=30))
    def slow() -> None:
        return None

    @flow
    def opts() -> None:
        train()
        fetch()
        slow()
        load()

    dag = opts.build()
    t = dag.tasks["train"]
    assert t.retry.max_attempts == 4
    assert t.timeout == timedelta(seconds=60)
    assert t.tags == frozenset({"ml", "gpu"})
    assert t.trigger_rule is TriggerRule.ALL_DONE
    f = dag.tasks["fetch"]
    assert f.retry is policy
    assert f.timeout == timedelta(minutes=5)
    assert f.tags == frozenset({"etl"})
    assert f.trigger_rule is TriggerRule.ALL_SUCCESS
    s = dag.tasks["slow"]
    assert (s.retry.max_attempts, s.retry.delay) == (2, timedelta(seconds=30))
    plain_spec = dag.tasks["load"]
    assert plain_spec.retry == RetryPolicy()
    assert plain_spec.timeout is None
    assert plain_spec.tags == frozenset()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"retries": -1}, PolicyError),
        ({"timeout": 0}, PolicyError),
        ({"trigger_rule": "sometimes"}, PolicyError),
        ({"task_id": "bad id"}, DefinitionError),
    ],
)
def test_bad_task_option_values(options: dict[str, Any], error: type[Exception]) -> None:
    @flow
    def bad() -> None:
        load.override(**options)()

    with pytest.raises(error):
        bad.build()


def test_unknown_task_option() -> None:
    with pytest.raises(DefinitionError, match="unknown @task option 'retry'"):
        task(retry=3)
    with pytest.raises(DefinitionError, match="unknown @task option 'colour'"):
        task(plain, colour="red")


def test_override_with_an_unknown_option_is_a_definition_error() -> None:
    @flow
    def bad() -> None:
        load.override(colour="red")()

    with pytest.raises(DefinitionError, match="colour"):
        load.override(colour="red")
        bad.build()


def test_automatic_ids_skip_taken_ids() -> None:
    @flow
    def clash() -> None:
        load(task_id="load")
        load()

    assert len(clash.build()) == 2


def test_duplicate_explicit_ids_in_a_taskflow() -> None:
    @flow
    def dup() -> None:
        load(task_id="x")
        double([1], task_id="x")

    with pytest.raises(DefinitionError, match="duplicate task id 'x'"):
        dup.build()


def test_mixing_styles_in_one_flow() -> None:
    @flow
    def mixed() -> None:
        xs = load()
        fetch = ShellTask("fetch", "echo hi", env={"A": "1"})
        prep = PythonTask("prep", plain, args=(xs,))
        fetch >> prep >> double(prep)
        xs >> fetch

    dag = mixed.build()
    assert set(dag.tasks) == {"load", "fetch", "prep", "double"}
    assert upstream(dag, "fetch") == {"load"}
    assert upstream(dag, "prep") == {"load", "fetch"}
    assert dag.tasks["prep"].data_inputs == ("load",)
    assert upstream(dag, "double") == {"prep"}
    assert dag.tasks["double"].args == (Ref("prep"),)
    assert isinstance(dag.tasks["fetch"].op, ShellOp)
    assert dag.order.index("load") < dag.order.index("fetch") < dag.order.index("prep")


def test_cycle_in_a_taskflow() -> None:
    @flow
    def loop() -> None:
        a = load()
        b = double(a)
        b >> a

    with pytest.raises(CycleError) as info:
        loop.build()
    assert info.value.path in (("load", "double", "load"), ("double", "load", "double"))
    assert "'loop'" in str(info.value)


# --- operator style ----------------------------------------------------------------------------


def test_operator_style_flow() -> None:
    with Flow("ops", description="d") as f:
        a = PythonTask("a", plain, args=(1,), kwargs={"k": 2})
        b = ShellTask("b", "echo hi")
        result = a >> b

    assert result is b
    dag = f.build()
    assert dag.name == "ops"
    assert f.description == "d"
    assert upstream(dag, "b") == {"a"}
    assert dag.tasks["a"].args == (1,)
    assert dag.tasks["a"].kwargs == {"k": 2}
    assert isinstance(dag.tasks["a"].op, PythonOp)
    assert dag.tasks["a"].data_inputs == ()


def test_lshift() -> None:
    with Flow("f") as f:
        a = PythonTask("a", plain)
        b = PythonTask("b", plain)
        assert (a << b) is b

    dag = f.build()
    assert upstream(dag, "a") == {"b"}
    assert upstream(dag, "b") == set()


def test_list_rshift_task() -> None:
    with Flow("f") as f:
        a, b, c = (PythonTask(t, plain) for t in "abc")
        assert ([a, b] >> c) is c

    dag = f.build()
    assert upstream(dag, "c") == {"a", "b"}
    assert upstream(dag, "a") == upstream(dag, "b") == set()


def test_task_rshift_list() -> None:
    with Flow("f") as f:
        a, b, c = (PythonTask(t, plain) for t in "abc")
        assert (a >> [b, c]) == [b, c]

    dag = f.build()
    assert upstream(dag, "b") == upstream(dag, "c") == {"a"}


def test_list_lshift_task() -> None:
    with Flow("f") as f:
        a, b, c = (PythonTask(t, plain) for t in "abc")
        [a, b] << c

    dag = f.build()
    assert upstream(dag, "a") == upstream(dag, "b") == {"c"}


def test_chaining() -> None:
    with Flow("f") as f:
        a, b, c, d = (PythonTask(t, plain) for t in "abcd")
        a >> b >> c >> d

    dag = f.build()
    assert dag.order == ("a", "b", "c", "d")
    assert sorted(dag.edges()) == [("a", "b"), ("b", "c"), ("c", "d")]


def test_repeated_edges_are_one_edge() -> None:
    with Flow("f") as f:
        a = PythonTask("a", plain)
        b = PythonTask("b", plain, args=(a, [a]))
        a >> b
        b << a

    dag = f.build()
    assert dag.tasks["b"].upstream == ("a",)
    assert list(dag.edges()) == [("a", "b")]


def test_flow_params_operator_style() -> None:
    f = Flow("p", params={"n": 1, "day": "mon"})
    assert f.params == (ParamSpec("n", 1), ParamSpec("day", "mon"))
    assert f.build().params == {"n": 1, "day": "mon"}
    assert f.build({"n": 9}).params == {"n": 9, "day": "mon"}
    with pytest.raises(ParameterError, match="'zzz'"):
        f.build({"zzz": 1})


def test_operator_task_options() -> None:
    with Flow("f") as f:
        PythonTask(
            "p",
            plain,
            retries=2,
            retry_delay=timedelta(seconds=3),
            timeout=1.5,
            tags=("a", "b"),
            trigger_rule=TriggerRule.NONE_FAILED,
        )
        ShellTask("s", "true", retries=RetryPolicy(max_attempts=9), trigger_rule="always")

    dag = f.build()
    p, s = dag.tasks["p"], dag.tasks["s"]
    assert (p.retry.max_attempts, p.retry.delay) == (3, timedelta(seconds=3))
    assert p.timeout == timedelta(seconds=1.5)
    assert p.tags == frozenset({"a", "b"})
    assert p.trigger_rule is TriggerRule.NONE_FAILED
    assert s.retry.max_attempts == 9
    assert s.trigger_rule is TriggerRule.ALWAYS


def test_tasks_outside_a_flow_are_refused() -> None:
    with pytest.raises(DefinitionError, match="outside a flow"):
        PythonTask("a", plain)
    with pytest.raises(DefinitionError, match="outside a flow"):
        ShellTask("b", "echo")
    with Flow("f"):
        PythonTask("inside", plain)
    with pytest.raises(DefinitionError, match="outside a flow"):
        PythonTask("after", plain)


def test_duplicate_ids_operator_style() -> None:
    with Flow("f"):
        PythonTask("a", plain)
        with pytest.raises(DefinitionError, match="duplicate task id 'a'"):
            ShellTask("a", "echo")


def test_edges_between_flows_are_refused() -> None:
    with Flow("one"):
        a = PythonTask("a", plain)
    with Flow("two") as two:
        b = PythonTask("b", plain)
        c = PythonTask("c", plain)
        with pytest.raises(DefinitionError, match="different flows"):
            a >> b
        with pytest.raises(DefinitionError, match="different flows"):
            b << a
        with pytest.raises(DefinitionError, match="different flows"):
            [a] >> c
    assert two.build().tasks["b"].upstream == ()


def test_data_edge_between_flows_is_refused() -> None:
    with Flow("one"):
        a = PythonTask("a", plain)
    with Flow("two") as two:
        PythonTask("b", plain, args=([a],))
    with pytest.raises(DefinitionError, match="another flow"):
        two.build()


@pytest.mark.parametrize("other", [5, "a", [1]], ids=repr)
def test_chaining_with_a_non_task(other: Any) -> None:
    with Flow("f"):
        a = PythonTask("a", plain)
        with pytest.raises(DefinitionError, match="not a task"):
            a >> other
        with pytest.raises(DefinitionError, match="not a task"):
            a << other


def test_nested_flows_record_into_the_innermost() -> None:
    with Flow("outer") as outer:
        PythonTask("o1", plain)
        with Flow("inner") as inner:
            PythonTask("i1", plain)
        PythonTask("o2", plain)
    assert set(outer.build().tasks) == {"o1", "o2"}
    assert set(inner.build().tasks) == {"i1"}


def test_cycle_operator_style() -> None:
    with Flow("cyc") as f:
        a, b, c = (PythonTask(t, plain) for t in "abc")
        a >> b >> c >> a
    with pytest.raises(CycleError) as info:
        f.build()
    rotations = ["a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c"]
    assert any(r in str(info.value) for r in rotations), str(info.value)


def test_python_task_checks_its_call() -> None:
    def two(x: int, y: int) -> int:
        return x + y

    with Flow("f"):
        with pytest.raises(DefinitionError, match="task 'p'"):
            PythonTask("p", two, args=(1,))
        with pytest.raises(DefinitionError, match="not callable"):
            PythonTask("q", 42)  # type: ignore[arg-type]
        with pytest.raises(DefinitionError, match="'ctx'"):
            PythonTask("r", with_ctx.fn, args=(1,), kwargs={"ctx": None})
        PythonTask("ok", two, args=(1,), kwargs={"y": 2})


def test_shell_task_values() -> None:
    with Flow("f") as f:
        ShellTask("s", "ls", env={"N": 3}, cwd=Path("/tmp"))  # type: ignore[dict-item]
        with pytest.raises(DefinitionError, match="non-empty"):
            ShellTask("empty", "   ")
    op = f.build().tasks["s"].op
    assert isinstance(op, ShellOp)
    assert op.env == {"N": "3"}
    assert op.cwd == "/tmp"
    assert op.command == "ls"


# --- parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("default", "raw", "value"),
    [
        (1, "3", 3),
        (1, " 7 ", 7),
        (0.1, "0.5", 0.5),
        (0.1, "2", 2.0),
        (False, "true", True),
        (False, "Yes", True),
        (True, "0", False),
        (True, "off", False),
        ("x", "42", "42"),
        ([], "[1, 2]", [1, 2]),
        ({}, '{"a": 1}', {"a": 1}),
        (None, "5", 5),
        (None, '"s"', "s"),
        (None, "not json", "not json"),
        (REQUIRED, "[1]", [1]),
        (REQUIRED, "hello", "hello"),
    ],
)
def test_parse_param(default: Any, raw: str, value: Any) -> None:
    got = parse_param(ParamSpec("p", default), raw)
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize(
    ("default", "raw"),
    [
        (1, "3.5"),
        (1, "three"),
        (0.5, "half"),
        (True, "maybe"),
        ([], "{}"),
        ([], "not json"),
        ({}, "[1]"),
    ],
)
def test_parse_param_rejects(default: Any, raw: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_param(ParamSpec("p", default), raw)
    assert "'p'" in str(info.value)
    assert type(default).__name__ in str(info.value)


def test_merge_params() -> None:
    specs = (ParamSpec("a", 1), ParamSpec("b", REQUIRED))
    assert merge_params("f", specs, {"b": 2}) == {"a": 1, "b": 2}
    assert merge_params("f", specs, {"a": 5, "b": 2}) == {"a": 5, "b": 2}
    with pytest.raises(ParameterError, match="needs parameter 'b'"):
        merge_params("f", specs, None)
    with pytest.raises(ParameterError, match="parameters: none"):
        merge_params("f", (), {"x": 1})


class _Unhashable:
    __hash__ = None

    def __call__(self, x: int) -> int:
        return x


def test_a_function_s_signature_is_read_once_and_still_checks_every_task() -> None:
    from rota.operators.python import signature_of

    def two(a: int, b: int) -> int:
        return a + b

    assert signature_of(two) is signature_of(two)  # kept per function
    odd = _Unhashable()  # cannot be a cache key: read each time
    assert signature_of(odd) is not None
    with Flow("sigs"):
        PythonTask("ok", two, args=(1, 2))
        for n in range(3):  # the kept signature refuses each bad call, not only the first
            with pytest.raises(DefinitionError, match=f"task 'bad{n}'.*missing"):
                PythonTask(f"bad{n}", two, args=(1,))
        PythonTask("builtin", len, args=([1],))
        with pytest.raises(DefinitionError, match="task 'u'"):
            PythonTask("u", odd, args=(1, 2))
