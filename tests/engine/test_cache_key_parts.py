"""The parts of a cache key: run facts, rendered templates, cache_key parts, file content."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from rota.cache import content_hash, file_content
from rota.engine.cachekey import CacheKeyError, default_key, explain_difference, make_key, shown
from rota.errors import DefinitionError, PolicyError
from rota.model import cacheon
from rota.model.dag import TaskSpec
from rota.model.flows import Flow
from rota.model.policies import CacheInputs, CachePolicy, KeyFn
from rota.model.secrets import Secret
from rota.model.templating import template_vars
from rota.operators.base import ExecContext, digest
from rota.operators.python import PythonTask
from rota.operators.shell import ShellTask

DAY = datetime(2026, 3, 1, tzinfo=UTC)


def _vars(**params: object) -> dict[str, object]:
    return template_vars(
        run_id="r1",
        flow="f",
        task_id="t",
        try_number=1,
        params=params,
        logical_date=DAY,
        data_interval_start=DAY,
        data_interval_end=datetime(2026, 3, 2, tzinfo=UTC),
    )


def _ctx(**params: object) -> ExecContext:
    return ExecContext("r1", "f", "t", 1, params, logical_date=DAY, data_interval_start=DAY)


def _inputs(**changes: object) -> CacheInputs:
    base: dict[str, object] = {
        "task_id": "t",
        "code": "c0de",
        "inputs": {"up": "h1"},
        "constants": "k0",
        "version": "",
    }
    return CacheInputs(**{**base, **changes})  # type: ignore[arg-type]


def _spec(key_fn: KeyFn | None = None) -> TaskSpec:
    with Flow("keys") as f:
        PythonTask("t", print, cache_key=key_fn, cache=True)
    return f.build().tasks["t"]


# --- cache_on ----------------------------------------------------------------------------------
def test_cache_on_takes_run_fact_names_and_refuses_others() -> None:
    assert cacheon.coerce_on(None) is None
    assert cacheon.coerce_on("ds") == ("ds",)
    assert cacheon.coerce_on(["params.x", "ds", "params.x"]) == ("params.x", "ds")
    assert cacheon.coerce_on(()) == ()
    for bad in ("tomorrow", "params.", 3, "try_number"):
        with pytest.raises(PolicyError, match="cache_on: unknown name"):
            cacheon.coerce_on([bad])  # type: ignore[list-item]
    with pytest.raises(PolicyError, match="must be a list of names"):
        cacheon.coerce_on(5)  # type: ignore[arg-type]
    policy = CachePolicy.coerce(False, None, None, "", ("ds",))
    assert policy is not None and policy.on == ("ds",), "cache_on alone turns caching on"


def test_facts_expand_params_into_one_entry_each_as_canonical_json() -> None:
    variables = _vars(x="first", cfg={"b": 2, "a": 1}, n=3)
    assert cacheon.facts(cacheon.EVERYTHING, variables) == {
        "data_interval_end": "2026-03-02T00:00:00+00:00",
        "data_interval_start": "2026-03-01T00:00:00+00:00",
        "logical_date": "2026-03-01T00:00:00+00:00",
        "params.cfg": '{"a":1,"b":2}',
        "params.n": "3",
        "params.x": '"first"',
    }
    assert cacheon.facts(("params.n", "ds"), variables) == {"ds": "2026-03-01", "params.n": "3"}
    assert cacheon.facts((), variables) == {}


def test_cache_on_naming_a_missing_parameter_is_a_definition_error() -> None:
    with Flow("bad", params={"x": 1}) as f:
        PythonTask("t", print, cache=True, cache_on=("params.y",))
    with pytest.raises(DefinitionError, match=r"no parameter 'y' \(its parameters: x\)"):
        f.build()


# --- what operators read -----------------------------------------------------------------------
def test_a_shell_task_reads_the_run_and_its_rendered_templates_are_parts() -> None:
    with Flow("sh", params={"src": "", "mode": ""}) as f:
        ShellTask(
            "t",
            'load --day {{ ds }} --src "{{ params.src }}"',
            env={"MODE": "{{ params.mode }}", "PLAIN": "fixed"},
            cache=True,
        )
    op = f.build().tasks["t"].op
    reads = op.run_reads(_ctx(src="s3://a b", mode="fast"))  # type: ignore[attr-defined]
    assert reads.ambient
    assert reads.rendered == {
        "command": 'load --day "${ROTA_TPL_0}" --src "${ROTA_TPL_1}"',
        "ROTA_TPL_0": "2026-03-01",
        "ROTA_TPL_1": "s3://a b",
        "env MODE": "fast",
    }


def test_a_shell_tasks_secret_env_values_are_masked_and_a_secret_is_never_read() -> None:
    with Flow("sh", params={"t": ""}) as f:
        ShellTask(
            "t",
            "push",
            env={"API_TOKEN": "{{ params.t }}", "REF": Secret("HOME"), "USER_ID": "{{ params.t }}"},
            cache=True,
        )
    reads = f.build().tasks["t"].op.run_reads(_ctx(t="abc"))  # type: ignore[attr-defined]
    assert reads.rendered == {"env API_TOKEN": "***", "env USER_ID": "abc"}


def test_a_python_task_reads_the_run_only_through_ctx() -> None:
    def with_ctx(ctx: object) -> None: ...

    with Flow("py") as f:
        PythonTask("plain", print, cache=True)
        PythonTask("ctx", with_ctx, cache=True)
    tasks = f.build().tasks
    assert not tasks["plain"].op.run_reads(_ctx()).ambient  # type: ignore[attr-defined]
    assert tasks["ctx"].op.run_reads(_ctx()).ambient  # type: ignore[attr-defined]


# --- keys ----------------------------------------------------------------------------------------
def test_a_task_reading_nothing_of_the_run_keeps_the_key_it_had_before() -> None:
    # the formula keys had before run facts: existing cache entries stay valid
    assert default_key(_inputs()) == digest("c0de", "", "up=h1", "k0")


def test_run_facts_and_rendered_values_change_the_key() -> None:
    keys = {
        default_key(_inputs()),
        default_key(_inputs(run={"params.x": '"first"'})),
        default_key(_inputs(run={"params.x": '"second"'})),
        default_key(_inputs(run={"ds": "2026-03-01"})),
        default_key(_inputs(rendered={"ROTA_TPL_0": "first"})),
        default_key(_inputs(rendered={"ROTA_TPL_0": "second"})),
        # the same text as a run fact and as a rendered value are different parts
        default_key(_inputs(rendered={"params.x": '"first"'})),
    }
    assert len(keys) == 7
    one = _inputs(run={"a": "1", "b": "2"})
    other = _inputs(run={"b": "2", "a": "1"})
    assert default_key(one) == default_key(other)


def test_a_cache_key_function_replaces_the_key_or_adds_named_parts() -> None:
    inputs = _inputs(run={"ds": "2026-03-01"})
    key, added = make_key(_spec(lambda i: "v1-" + i.run["ds"]), inputs)
    assert (key, added) == ("user:v1-2026-03-01", {"user_key": "v1-2026-03-01"})
    long_key, _ = make_key(_spec(lambda i: "x" * 500), inputs)
    assert len(long_key) < 100, "a long user key is stored as its digest"

    key_a, added = make_key(_spec(lambda i: {"file a": "h1"}), inputs)
    key_b, _ = make_key(_spec(lambda i: {"file a": "h2"}), inputs)
    assert added == {"extra": {"file a": "h1"}}
    assert len({key_a, key_b, default_key(inputs)}) == 3
    with pytest.raises(CacheKeyError, match="must return a string or a dict of strings, got int"):
        make_key(_spec(lambda i: 7), inputs)  # type: ignore[arg-type,return-value]
    with pytest.raises(CacheKeyError):
        make_key(_spec(lambda i: {"n": 1}), inputs)  # type: ignore[dict-item]


def test_long_values_are_shown_short_but_stay_distinct() -> None:
    a, b = "x" * 300, "x" * 299 + "y"
    assert shown("short") == "short"
    assert shown(a) != shown(b) and len(shown(a)) < 200 and "300 characters" in shown(a)


def test_explain_names_each_changed_part() -> None:
    before = {"run": {"params.x": '"first"', "ds": "1"}, "rendered": {"ROTA_TPL_0": "first"}}
    now = {"run": {"params.x": '"second"'}, "rendered": {"ROTA_TPL_0": "second"}}
    assert explain_difference(now, before) == [
        "run fact ds removed (was '1')",
        "run fact params.x changed ('\"first\"' -> '\"second\"')",
        "rendered ROTA_TPL_0 changed ('first' -> 'second')",
    ]
    extra = explain_difference({"extra": {"file a": "h2"}}, {"extra": {"file a": "h1"}})
    assert extra == ["cache_key part file a changed ('h1' -> 'h2')"]


# --- file content --------------------------------------------------------------------------------
def test_content_hash_follows_bytes_and_names_not_the_folders_place(tmp_path: Path) -> None:
    data = tmp_path / "one" / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.csv").write_text("1\n")
    (data / "sub" / "b.csv").write_text("2\n")
    first = content_hash(data)
    moved = tmp_path / "two"
    (data.parent).rename(moved)
    assert content_hash(moved / "data") == first
    (moved / "data" / "sub" / "b.csv").write_text("3\n")
    changed = content_hash(moved / "data")
    (moved / "data" / "sub" / "b.csv").rename(moved / "data" / "sub" / "c.csv")
    renamed = content_hash(moved / "data")
    assert len({first, changed, renamed}) == 3
    file_a = content_hash(moved / "data" / "a.csv")
    (moved / "data" / "a.csv").write_text("1\n")  # rewritten, same bytes
    assert content_hash(moved / "data" / "a.csv") == file_a
    with pytest.raises(FileNotFoundError):
        content_hash(tmp_path / "missing.csv")


def test_file_content_renders_its_paths_with_the_attempts_variables(tmp_path: Path) -> None:
    (tmp_path / "2026-03-01.csv").write_text("day one\n")
    fn = file_content(str(tmp_path / "{{ ds }}.csv"))
    parts = fn(_inputs(variables=_vars()))
    path = tmp_path / "2026-03-01.csv"
    assert parts == {f"file {path}": f"blake2b:{content_hash(path)}"}
    with pytest.raises(DefinitionError, match="at least one path"):
        file_content()
    with pytest.raises(DefinitionError, match="template error"):
        file_content("{{ ds")
