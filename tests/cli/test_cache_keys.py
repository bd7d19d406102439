"""Cache keys end to end through ``rota``: what a cached task's result depends on is in its key.

Every test counts real executions with a ledger file the tasks append to.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from clihelp import RotaCli

from rota.model.states import RunState, TaskState
from rota.store.sql import SqlStore


def _ledger(path: Path) -> list[str]:
    steps = path.read_text().split() if path.exists() else []
    path.unlink(missing_ok=True)
    return steps


MAPPED = """
import os
from pathlib import Path
from typing import Any
from rota import flow, task

LEDGER = Path(os.environ["LEDGER"])


def mark(name: str) -> None:
    with LEDGER.open("a") as fh:
        fh.write(name + "\\n")


@task(cache=True)
def nums() -> list[int]:
    mark("nums")
    return [1, 2, 3]


@task(cache=True)
def sq(v: int) -> int:
    mark(f"sq{v}")
    return v * v


@task
def total(xs: list[int]) -> int:
    mark("total")
    if Path(os.environ["LEDGER"] + ".fail").exists():
        raise RuntimeError("total is broken")
    return sum(xs)


@flow
def mapped():
    total(sq.map(nums()))
"""


def test_a_mapped_cached_task_run_twice_shows_every_instance_cached_and_resumes(
    rota: RotaCli, tmp_path: Path, store: SqlStore, write_flow: Callable[[str, str], Path]
) -> None:
    # issue 10 §6: the second run crashed with "sq was already reported finished" and stayed
    # running; `rota resume` crashed the same way
    ledger = tmp_path / "ledger"
    env = {"LEDGER": str(ledger)}
    path = write_flow("mapped.py", MAPPED)
    first = rota("run", str(path), "--json", env=env)
    assert first.code == 0, first.err
    assert sorted(_ledger(ledger)) == ["nums", "sq1", "sq2", "sq3", "total"]

    Path(f"{ledger}.fail").touch()  # the second run fails after its cache hits
    second = rota("run", str(path), "--json", env=env)
    assert second.code == 1, second.err
    assert "Traceback" not in second.err
    assert _ledger(ledger) == ["total"]
    summary = second.json()
    assert summary["state"] == "failed"
    assert summary["tasks"]["nums"]["state"] == "cached"
    assert summary["tasks"]["sq"]["state"] == "success"
    assert summary["tasks"]["sq"]["mapped"] == {"count": 3, "cached": 3}
    run_id = summary["run_id"]
    rows = [a for a in store.attempts(run_id) if a.task_id == "sq"]
    assert sorted((a.map_index, a.state) for a in rows) == [
        (-1, TaskState.SUCCESS),
        *((i, TaskState.CACHED) for i in range(3)),
    ]
    assert all(a.cached_from is not None for a in rows if a.map_index >= 0)

    Path(f"{ledger}.fail").unlink()
    resumed = rota("resume", run_id, "--json", env=env)
    assert resumed.code == 0, resumed.err
    assert _ledger(ledger) == ["total"], "the instances are reused, not run again"
    # a cache hit is a success: resume keeps it (it planned to run `nums` again)
    assert "1 task(s) to run, 2 succeeded task(s) kept" in " ".join(resumed.err.split())
    assert "cached in try" not in resumed.err
    assert resumed.json()["state"] == "success"
    latest = {a.map_index: a.state for a in store.attempts(run_id) if a.task_id == "sq"}
    assert latest == {
        -1: TaskState.SUCCESS,
        0: TaskState.CACHED,
        1: TaskState.CACHED,
        2: TaskState.CACHED,
    }


PARAMS = """
import os
from pathlib import Path
from rota import Flow, ShellTask, flow, task

LEDGER = Path(os.environ["LEDGER"])

with Flow("shell", params={"x": "a"}) as shell:
    ShellTask("t", 'echo "t {{ params.x }}" >> "$LEDGER"; echo "{{ params.x }}"', cache=True)


@task(cache=True)
def read_x(ctx):
    with LEDGER.open("a") as fh:
        fh.write("read_x " + ctx.params["x"] + "\\n")
    return ctx.params["x"]


@flow
def python(x: str = "a", y: str = "b"):
    read_x()
"""

DECLARED = """
import os
from pathlib import Path
from rota import Flow, ShellTask, flow, task

LEDGER = Path(os.environ["LEDGER"])

with Flow("shell", params={"x": "a", "y": "b"}) as shell:
    ShellTask("t", 'echo "t {{ params.x }}" >> "$LEDGER"; echo "{{ params.x }}"',
              cache=True, cache_on=())


@task(cache=True, cache_on=("params.x",))
def read_x(ctx):
    with LEDGER.open("a") as fh:
        fh.write("read_x " + ctx.params["x"] + "\\n")
    return ctx.params["x"]


@flow
def python(x: str = "a", y: str = "b"):
    read_x()
"""


def _output(rota: RotaCli, run_id: str, task_id: str) -> str:
    shown = rota("outputs", "show", run_id, task_id)
    assert shown.code == 0, shown.err
    return shown.out.strip().splitlines()[-1]


def _run(rota: RotaCli, target: str, env: dict[str, str], *params: str) -> dict[str, Any]:
    args = [arg for p in params for arg in ("-p", p)]
    result = rota("run", target, *args, "--json", env=env)
    assert result.code == 0, result.err
    summary: dict[str, Any] = result.json()
    return summary


def test_a_shell_task_keyed_on_its_rendered_params_misses_when_a_param_changes(
    rota: RotaCli, tmp_path: Path, write_flow: Callable[[str, str], Path]
) -> None:
    # issue 10 §5: run with -p x=first then -p x=second, the second run returned "first"
    ledger = tmp_path / "ledger"
    env = {"LEDGER": str(ledger)}
    path = write_flow("params.py", PARAMS)
    first = _run(rota, f"{path}:shell", env, "x=first")
    second = _run(rota, f"{path}:shell", env, "x=second")
    assert _ledger(ledger) == ["t", "first", "t", "second"]
    assert second["tasks"]["t"]["state"] == "success"
    assert _output(rota, first["run_id"], "t") == "first"
    assert _output(rota, second["run_id"], "t") == "second"
    explain = rota("cache", "explain", second["run_id"], "t")
    assert explain.code == 0, explain.err
    assert "run fact params.x changed ('\"first\"' -> '\"second\"')" in explain.out
    assert "rendered ROTA_TPL_0 changed ('first' -> 'second')" in explain.out
    assert "ROTA_TPL_0 = 'second'" in explain.out  # the parts, as rendered


def test_a_python_task_reading_ctx_params_misses_when_a_param_changes(
    rota: RotaCli, tmp_path: Path, write_flow: Callable[[str, str], Path]
) -> None:
    # issue 10 §5: @task(cache=True) def t(ctx): return ctx.params["x"] returned "first" again
    ledger = tmp_path / "ledger"
    env = {"LEDGER": str(ledger)}
    path = write_flow("params.py", PARAMS)
    first = _run(rota, f"{path}:python", env, "x=first")
    second = _run(rota, f"{path}:python", env, "x=second")
    assert _ledger(ledger) == ["read_x", "first", "read_x", "second"]
    assert second["tasks"]["read_x"]["state"] == "success"
    assert _output(rota, first["run_id"], "read_x") == "first"
    assert _output(rota, second["run_id"], "read_x") == "second"
    third = _run(rota, f"{path}:python", env, "x=second", "y=other")
    assert _ledger(ledger) == ["read_x", "second"], "y and this manual run's dates differ"
    explain = rota("cache", "explain", third["run_id"], "read_x")
    assert "run fact params.y changed" in explain.out
    assert "run fact logical_date changed" in explain.out
    assert "run facts (everything the task can read)" in explain.out


def test_tasks_declaring_what_they_read_of_the_run_are_keyed_on_that_alone(
    rota: RotaCli, tmp_path: Path, write_flow: Callable[[str, str], Path]
) -> None:
    ledger = tmp_path / "ledger"
    env = {"LEDGER": str(ledger)}
    path = write_flow("declared.py", DECLARED)
    # the shell task declares it reads nothing: its rendered {{ params.x }} is its whole key part
    runs = [
        _run(rota, f"{path}:shell", env, "x=first", "y=1"),
        _run(rota, f"{path}:shell", env, "x=first", "y=2"),
        _run(rota, f"{path}:shell", env, "x=second", "y=2"),
    ]
    assert _ledger(ledger) == ["t", "first", "t", "second"]
    assert [r["tasks"]["t"]["state"] for r in runs] == ["success", "cached", "success"]
    assert _output(rota, runs[2]["run_id"], "t") == "second"
    explain = rota("cache", "explain", runs[1]["run_id"], "t")
    assert "run facts (cache_on=())" in explain.out and "hit: reused" in explain.out
    # the Python task reads params.x only
    runs = [
        _run(rota, f"{path}:python", env, "x=first"),
        _run(rota, f"{path}:python", env, "x=first", "y=other"),
        _run(rota, f"{path}:python", env, "x=second", "y=other"),
    ]
    assert _ledger(ledger) == ["read_x", "first", "read_x", "second"]
    assert [r["tasks"]["read_x"]["state"] for r in runs] == ["success", "cached", "success"]
    explain = rota("cache", "explain", runs[2]["run_id"], "read_x")
    assert "run facts (cache_on=params.x)" in explain.out
    assert "run fact params.x changed" in explain.out and "params.y" not in explain.out


DAILY = """
import os
from pathlib import Path
from rota import Flow, ShellTask, task

LEDGER = Path(os.environ["LEDGER"])


@task(cache=True)
def stamp(ctx) -> str:
    day = ctx.logical_date.date().isoformat()
    with LEDGER.open("a") as fh:
        fh.write(f"stamp:{day}\\n")
    return day


with Flow("daily", schedule="@daily") as daily:
    ShellTask("day", 'echo "day:{{ ds }}" >> "$LEDGER"; echo "{{ ds }}"', cache=True)
    stamp()
"""


def test_a_backfill_of_cached_ds_tasks_runs_every_date_and_a_rerun_reuses_each_dates_own(
    rota: RotaCli, tmp_path: Path, store: SqlStore, write_flow: Callable[[str, str], Path]
) -> None:
    # issue 10 §5: a backfill reused the first date's output for every date
    ledger = tmp_path / "ledger"
    env = {"LEDGER": str(ledger), "ROTA_EXECUTOR": "threads", "ROTA_WORKERS": "1"}
    path = write_flow("daily.py", DAILY)
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    args = (
        "backfill",
        str(path),
        "--start",
        days[0],
        "--end",
        days[-1],
    )  # --end is the last logical date included
    done = rota(*args, env=env)
    assert done.code == 0, done.err
    assert sorted(_ledger(ledger)) == sorted(
        [f"day:{d}" for d in days] + [f"stamp:{d}" for d in days]
    )
    runs = store.runs_for_dates("daily")
    assert [r.logical_date.date().isoformat() for r in runs if r.logical_date] == days
    for run, day in zip(runs, days, strict=True):
        assert _output(rota, run.run_id, "day") == day
        assert _output(rota, run.run_id, "stamp") == day

    again = rota(*args, "--rerun", "all", env=env)
    assert again.code == 0, again.err
    assert _ledger(ledger) == [], "each date hits its own entry"
    for run, day in zip(runs, days, strict=True):
        latest = {a.task_id: a for a in store.attempts(run.run_id)}
        assert {t: a.state for t, a in latest.items()} == {
            "day": TaskState.CACHED,
            "stamp": TaskState.CACHED,
        }
        assert _output(rota, run.run_id, "day") == day


FILES = """
import os
from pathlib import Path
from rota import flow, task
from rota.cache import file_content

LEDGER = Path(os.environ["LEDGER"])
DATA = os.environ["DATA"]


def mark(name: str) -> None:
    with LEDGER.open("a") as fh:
        fh.write(name + "\\n")


@task(cache=True, cache_key=file_content(DATA))
def count(path: str) -> int:
    mark("count")
    return len(Path(path).read_text().splitlines())


@task(cache=True)
def count_by_path(path: str) -> int:  # its key sees the path, never the file's content
    mark("count_by_path")
    return len(Path(path).read_text().splitlines())


def broken(inputs):
    raise ValueError("no key today")


@task(cache=True, cache_key=broken)
def unkeyable() -> int:
    mark("unkeyable")
    return 1


@flow
def files():
    count(DATA)
    count_by_path(DATA)
    unkeyable()
"""


def test_file_content_keys_on_a_files_bytes_and_a_failing_key_function_runs_the_task(
    rota: RotaCli, tmp_path: Path, write_flow: Callable[[str, str], Path]
) -> None:
    ledger, data = tmp_path / "ledger", tmp_path / "data.csv"
    env = {"LEDGER": str(ledger), "DATA": str(data)}
    data.write_text("a\nb\n")
    path = write_flow("files.py", FILES)
    _run(rota, str(path), env)
    assert sorted(_ledger(ledger)) == ["count", "count_by_path", "unkeyable"]
    second = _run(rota, str(path), env)
    assert _ledger(ledger) == ["unkeyable"], "a key that cannot be computed: the task runs"
    assert second["tasks"]["count"]["state"] == "cached"
    explain = rota("cache", "explain", second["run_id"], "unkeyable")
    assert explain.code == 0, explain.err
    assert "miss: no key could be computed, so the task ran: ValueError: no key today" in (
        explain.out
    )

    data.write_text("a\nb\nc\n")  # same path, new content
    third = _run(rota, str(path), env)
    assert sorted(_ledger(ledger)) == ["count", "unkeyable"]
    assert _output(rota, third["run_id"], "count") == "3"
    assert _output(rota, third["run_id"], "count_by_path") == "2", "the path alone is not content"
    explain = rota("cache", "explain", third["run_id"], "count")
    assert f"cache_key part file {data} changed" in explain.out
    assert f"file {data} = 'blake2b:" in explain.out

    data.unlink()
    gone = rota("run", str(path), "--json", env=env)
    assert gone.code == 1, "count runs unkeyed and fails on the missing file"
    explain = rota("cache", "explain", gone.json()["run_id"], "count")
    assert "no key could be computed" in explain.out and "FileNotFoundError" in explain.out


BAD_CACHE_ON = """
from rota import flow, task


@task(cache=True, cache_on=("params.nope",))
def t(ctx) -> int:
    return 1


@flow
def bad(x: int = 1):
    t()
"""


def test_cache_on_naming_an_unknown_parameter_or_fact_is_one_line_exit_2_and_stores_nothing(
    rota: RotaCli, store: SqlStore, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("bad.py", BAD_CACHE_ON)
    result = rota("run", str(path))
    assert result.code == 2
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert "task 't': cache_on names 'params.nope', but the flow has no parameter 'nope'" in (
        result.err
    )
    assert "(its parameters: x)" in result.err
    path.write_text(BAD_CACHE_ON.replace('"params.nope"', '"tomorrow"'))
    result = rota("run", str(path))
    assert result.code == 2 and "Traceback" not in result.err
    assert "cache_on: unknown name 'tomorrow'" in result.err
    assert f"{path}:5" in result.err
    assert store.runs_in_states(list(RunState)) == []


SECRETS = """
import os
from pathlib import Path
from rota import Flow, ShellTask, flow, task

LEDGER = Path(os.environ["LEDGER"])

with Flow("push", params={"api_token": "none", "target": "a"}) as push:
    ShellTask(
        "send",
        'echo "send {{ params.target }}" >> "$LEDGER"; test -n "{{ params.api_token }}"',
        env={"AUTH_TOKEN": "Bearer {{ params.api_token }}", "DEST": "{{ params.target }}"},
        cache=True,
        cache_on=("params",),
    )
"""


def _files_holding(home: Path, texts: list[str]) -> list[str]:
    return [
        str(p.relative_to(home))
        for p in sorted(home.rglob("*"))
        if p.is_file() and any(t.encode() in p.read_bytes() for t in texts)
    ]


def test_no_key_depends_on_a_secret_and_no_stored_part_holds_one(
    rota: RotaCli, home: Path, tmp_path: Path, write_flow: Callable[[str, str], Path]
) -> None:
    ledger = tmp_path / "ledger"
    env = {"LEDGER": str(ledger)}
    path = write_flow("secrets.py", SECRETS)
    tokens = ["tok-first-1234567", "tok-second-7654321"]
    runs = [
        _run(rota, str(path), env, f"api_token={tokens[0]}", "target=a"),
        _run(rota, str(path), env, f"api_token={tokens[1]}", "target=a"),  # a rotated token
        _run(rota, str(path), env, f"api_token={tokens[1]}", "target=b"),
    ]
    assert _ledger(ledger) == ["send", "a", "send", "b"]
    assert [r["tasks"]["send"]["state"] for r in runs] == ["success", "cached", "success"]
    explain = rota("cache", "explain", runs[2]["run_id"], "send")
    assert explain.code == 0, explain.err
    assert "params.api_token = '\"***\"'" in explain.out
    assert "env AUTH_TOKEN = '***'" in explain.out and "env DEST = 'b'" in explain.out
    assert "ROTA_TPL_1 = '***'" in explain.out
    assert not any(t in explain.out for t in tokens)
    assert _files_holding(home, tokens) == []
