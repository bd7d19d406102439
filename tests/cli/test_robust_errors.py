"""Hangs and tracebacks where one line was due (issue 9, §6), through the real ``rota`` command.

Bad input from a person: one line on stderr, exit 2, no traceback, and nothing stored (the store
file is not even created). A failure around a task's code: the run ends, failed, naming the OS's
own error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from clihelp import Result, RotaCli

from rota.store.sql import open_store

PARAMS_FLOW = """
from rota import flow, task

@task
def show(x, f, items) -> str:
    return repr((x, f, items))[:200]

@flow
def pf(x=None, f: float = 1.0, items: list = []):
    show(x, f, items)
"""

BAD_PARAMS = {
    # a 100,000-deep JSON value (unclosed: a closed one would not fit in one argument)
    "deep-untyped": ("x=" + "[" * 100_000, "parameter 'x': JSON nested more than 100 levels deep"),
    "deep-list": ("items=" + "[" * 100_000, "parameter 'items': JSON nested more than 100 levels"),
    "deep-and-valid": ("x=" + "[" * 500 + "]" * 500, "nested more than 100 levels deep"),
    "deep-in-object": ('x={"a": ' * 101 + "1" + "}" * 101, "nested more than 100 levels deep"),
    # argv cannot carry a NUL byte; JSON's escape can
    "nul-in-string": ('x="a\\u0000b"', "parameter 'x' contains a NUL character"),
    "nul-in-key": ('items=[{"k\\u0000": 1}]', "parameter 'items' contains a NUL character"),
    "nan-float": ("f=nan", "parameter 'f' expects a finite float, got 'nan'"),
    "inf-float": ("f=-Infinity", "expects a finite float, got '-Infinity'"),
    "overflowing-float": ("f=1e999", "expects a finite float, got '1e999'"),
    "nan-json": ("x=NaN", "parameter 'x': NaN is not JSON"),
    "infinity-in-list": ("items=[1, Infinity]", "parameter 'items': Infinity is not JSON"),
}


def assert_refused(result: Result, message: str, home: Path) -> None:
    """One line naming the problem, exit 2, no traceback, nothing stored."""
    assert result.code == 2, (result.code, result.err[-2000:])
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err[-2000:]
    assert lines[0].startswith("rota: error: "), lines[0]
    assert message in lines[0], lines[0]
    assert len(lines[0]) < 400, "the line quotes too much of the input"
    assert "Traceback" not in result.err
    assert not (home / "rota.db").exists(), "something was stored"


@pytest.mark.parametrize("case", sorted(BAD_PARAMS))
def test_a_bad_parameter_value_is_one_line_exit_2(
    case: str, rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("pf.py", PARAMS_FLOW)
    param, message = BAD_PARAMS[case]
    assert_refused(rota("run", str(path), "-p", param), message, home)


def test_trigger_refuses_a_nan_parameter_and_queues_nothing(
    rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("pf.py", PARAMS_FLOW)
    assert_refused(rota("trigger", str(path), "-p", "f=inf"), "expects a finite float", home)


def test_good_parameter_values_still_run(
    rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("pf.py", PARAMS_FLOW)
    deep_ok = "[" * 100 + "]" * 100
    result = rota(
        "run", str(path), "-p", f"x={deep_ok}", "-p", "f=-2.5e3", "-p", 'items=["NaN", "a]b"]',
        "--json", "--executor", "inprocess",
    )  # fmt: skip
    assert result.code == 0, result.err
    with open_store(f"sqlite:///{home}/rota.db") as store:
        (run,) = store.list_runs()
    assert run.params["f"] == -2500.0
    assert run.params["items"] == ["NaN", "a]b"]
    depth, value = 0, run.params["x"]
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    assert depth + 1 == 100 and value == []


# --- task ids: every file name made from one must fit, and none may be a file Rota keeps ----------

LONG = "t" * 181  # one more than TASK_ID_MAX; main accepted up to 250, whose files did not fit
SHELL_TASK = "from rota import Flow, ShellTask\n\nwith Flow('f'):\n    ShellTask({!r}, 'true')\n"

BAD_IDS = {
    "too-long": (
        SHELL_TASK.format(LONG),
        4,
        "task id 'tttt",
        "is 181 characters long; at most 180",
    ),
    "too-long-taskflow": (
        f"from rota import flow, task\n\n@task\ndef {LONG}():\n    return 1\n\n"
        f"@flow\ndef f():\n    {LONG}()\n",
        9,
        "task id 'tttt",
        "is 181 characters long; at most 180",
    ),
    "reserved": (
        SHELL_TASK.format("callbacks.log"),
        4,
        "task id 'callbacks.log' is reserved",
        "beside the task folders",
    ),
    "reserved-other-case": (
        SHELL_TASK.format("Callbacks.LOG"),
        4,
        "task id 'Callbacks.LOG' is reserved",
        "ignoring case",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_IDS))
def test_a_task_id_rota_cannot_make_files_of_is_refused_at_load(
    case: str, rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    source, line, first, second = BAD_IDS[case]
    path = write_flow("ids.py", source)
    result = rota("run", str(path))
    assert_refused(result, first, home)
    assert second in result.err
    assert f"{path}:{line}: " in result.err


def test_task_ids_differing_only_in_case_are_refused(
    rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    source = (
        "from rota import Flow, ShellTask\n\nwith Flow('f') as f:\n"
        "    ShellTask('Train', 'true')\n    ShellTask('train', 'true')\n"
    )
    path = write_flow("twins.py", source)
    assert_refused(
        rota("run", str(path)), "'Train' and 'train' in flow 'f' differ only in case", home
    )


def test_the_longest_id_with_a_mapped_task_runs_and_keeps_its_files(
    rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    longest = "m" * 180
    source = f"""
from rota import flow, task

@task
def items() -> list[int]:
    return [1, 2]

@task(task_id="{longest}")
def work(x: int, ctx) -> int:
    ctx.checkpoint.save({{"x": x}})
    print("working on", x)
    return x * 10

@flow
def f():
    work.map(x=items())
"""
    path = write_flow("longest.py", source)
    # every output in a file (none kept in its row): the file names are what is checked here
    result = rota("run", str(path), "--json", env={"ROTA_INLINE_OUTPUT_MAX": "0"})
    assert result.code == 0, result.err
    (run_dir,) = (home / "logs").iterdir()
    logs = sorted(p.parent.name for p in run_dir.glob("*/1.log"))
    assert logs == [f"{longest}@0", f"{longest}@1"]
    outputs = sorted(p.name for p in (home / "artifacts" / run_dir.name).iterdir())
    assert f"{longest}@1.json" in outputs


# --- backfills: a range of more than 100,000 intervals is refused with their number ---------------

MINUTELY = """
from rota import flow, task

@task
def tick() -> None:
    return None

@flow(schedule="* * * * *", timezone="Europe/Berlin")
def minutely():
    tick()
"""


def test_a_backfill_of_millions_of_intervals_is_refused_with_their_count(
    rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("minutely.py", MINUTELY)
    # ten years of minutes, counted without making them (3,653 days of 1,440 minutes: DST adds
    # and removes the same hours; --end is the latest logical date included)
    for extra in ((), ("--dry-run",)):
        result = rota(
            "backfill", str(path), "--start", "2016-01-01T00:00:00+00:00",
            "--end", "2025-12-31T23:59:00+00:00", *extra, timeout=60,
        )  # fmt: skip
        assert_refused(result, "the range holds 5,260,320 intervals of flow 'minutely'", home)
        assert "more than the 100,000 a backfill plans at most" in result.err
        assert "--max-intervals 5260320" in result.err


def test_max_intervals_sets_the_cap(
    rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("minutely.py", MINUTELY)
    span = ("--start", "2026-01-01T00:00:00+00:00", "--end", "2026-01-01T00:02:00+00:00")
    refused = rota("backfill", str(path), *span, "--max-intervals", "2", "--dry-run")
    assert_refused(refused, "the range holds 3 intervals", home)
    allowed = rota("backfill", str(path), *span, "--max-intervals", "3", "--dry-run")
    assert allowed.code == 0, allowed.err
    assert "3 interval(s)" in allowed.out
    with open_store(f"sqlite:///{home}/rota.db") as store:
        assert store.list_runs() == [], "a dry run stores nothing"


# --- an attempt whose log cannot be written still ends, naming the OS's error ------------------

PRINTS = """
from rota import flow, task

@task
def hello() -> int:
    print("hello")
    return 1

@flow
def greet():
    hello()
"""


def _unwritable(logs: Path) -> None:
    """*logs* as a folder this process cannot write in: a 0500 folder, or, where permission bits
    do not stop this process (root), a regular file in its place, whose subfolders cannot be
    made either."""
    logs.mkdir()
    logs.chmod(0o500)
    try:
        (logs / "probe").touch()
    except PermissionError:
        return
    (logs / "probe").unlink()
    logs.chmod(0o700)
    logs.rmdir()
    logs.write_text("not a folder\n")


@pytest.mark.parametrize("executor", ["threads", "local", "inprocess"])
def test_an_unwritable_logs_folder_fails_the_run_with_the_real_error_and_no_hang(
    executor: str, rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("greet.py", PRINTS)
    logs = home / "logs"
    _unwritable(logs)
    try:
        result = rota("run", str(path), "--executor", executor, timeout=60)
    finally:
        if logs.is_dir():
            logs.chmod(0o700)
    assert result.code == 1, result.err[-2000:]
    assert "Traceback" not in result.err
    assert "WorkerLost" not in result.err
    errors = ("PermissionError", "NotADirectoryError", "FileExistsError")
    (line,) = [ln for ln in result.err.splitlines() if ln.startswith("hello (attempt 1): ")]
    assert any(f": {name}: " in line for name in errors), line
    assert str(logs) in line
    with open_store(f"sqlite:///{home}/rota.db") as store:
        (run,) = store.list_runs()
        assert run.state.value == "failed"
        (attempt,) = store.attempts(run.run_id)
        assert attempt.state.value == "failed"
        assert attempt.error_type in errors
        assert str(logs) in str(attempt.error_message)
