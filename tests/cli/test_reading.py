"""A CLI that reads well at 80 columns: whole run ids, prefixes and ``--last`` wherever a run id is
taken, ``runs show`` as a tree naming a failed mapped instance's own error, ``task[N]`` in
``tasks logs``, ``outputs show`` and ``clear``, and ``resume -p`` recorded on the run."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from clihelp import RotaCli

from rota.store.sql import SqlStore

WriteFlow = Callable[[str, str], Path]

NARROW = {"COLUMNS": "80", "NO_COLOR": "1"}

MAPPED = """
import os, time
from pathlib import Path
from rota import flow, task


@task
def items() -> list[int]:
    return [0, 1, 2]


@task(timeout=1.0)
def fit(x: int) -> int:
    print(f"fitting {x}")
    if x == 1 and not Path(os.environ["FIXED"]).exists():
        time.sleep(30)
    return x * 10


@flow
def mapped():
    fit.map(x=items())
"""

PARAMS = """
import os
from pathlib import Path
from rota import flow, task


@task
def first(threshold: float) -> float:
    return threshold


@task
def second(x: float, threshold: float) -> float:
    if not Path(os.environ["FIXED"]).exists():
        raise RuntimeError("second is broken")
    return x + threshold


@flow
def tuned(threshold: float = 0.5):
    second(first(threshold), threshold)
"""


def _failed_mapped_run(rota: RotaCli, write_flow: WriteFlow, tmp_path: Path) -> tuple[str, dict]:
    path = write_flow("mapped.py", MAPPED)
    env = {**NARROW, "FIXED": str(tmp_path / "fixed")}
    result = rota("run", str(path), env=env)
    assert result.code == 1, result
    return result.err + result.out, env


def _run_ids(store: SqlStore) -> list[str]:
    return [r.run_id for r in store.list_runs()]


def test_runs_list_at_80_columns_shows_whole_ids_and_durations_without_microseconds(
    rota: RotaCli, write_flow: WriteFlow, tmp_path: Path, store: SqlStore
) -> None:
    path = write_flow("tuned.py", PARAMS)
    env = {**NARROW, "FIXED": str(tmp_path / "fixed")}
    (tmp_path / "fixed").touch()
    for _ in range(2):
        assert rota("run", str(path), env=env).code == 0
    listed = rota("runs", "list", env=env)
    assert listed.code == 0, listed
    ids = _run_ids(store)
    assert len(ids) == 2
    for run_id in ids:
        (row,) = [ln for ln in listed.out.splitlines() if run_id in ln]
        assert len(row) <= 80, row
        assert re.search(r"\d\d:\d\d:\d\d\s+\d+\.\d\ds$", row.rstrip()), row  # start, took
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", listed.out), "no microseconds"
    assert "\x1b[" not in listed.out  # NO_COLOR


def test_a_prefix_names_a_run_and_an_ambiguous_one_names_the_candidates(
    rota: RotaCli, write_flow: WriteFlow, tmp_path: Path, store: SqlStore
) -> None:
    path = write_flow("tuned.py", PARAMS)
    env = {**NARROW, "FIXED": str(tmp_path / "fixed")}
    (tmp_path / "fixed").touch()
    for _ in range(2):
        assert rota("run", str(path), env=env).code == 0
    newest, oldest = _run_ids(store)
    common = next(i for i, (a, b) in enumerate(zip(newest, oldest, strict=True)) if a != b)
    shown = rota("runs", "show", oldest[: common + 1], env=env)
    assert shown.code == 0, shown
    assert f"run {oldest} " in shown.out and newest not in shown.out
    ambiguous = rota("runs", "show", oldest[:common], env=env)
    assert ambiguous.code == 2, ambiguous
    (message,) = ambiguous.err.strip().splitlines()
    assert "matches several runs" in message and newest in message and oldest in message
    missing = rota("runs", "show", "nosuchrun", env=env)
    assert missing.code == 2 and "no run 'nosuchrun'" in missing.err
    last = rota("runs", "show", "--last", "tuned", env=env)
    assert last.code == 0 and f"run {newest} " in last.out
    any_flow = rota("runs", "show", "--last", env=env)
    assert any_flow.code == 0 and f"run {newest} " in any_flow.out


def test_a_failed_mapped_instance_is_named_with_its_own_error_and_its_log_is_readable(
    rota: RotaCli, write_flow: WriteFlow, tmp_path: Path, store: SqlStore
) -> None:
    said, env = _failed_mapped_run(rota, write_flow, tmp_path)
    assert "fit[1] (attempt 1): TaskTimeout" in said, said
    assert "MappedInstancesFailed" not in said
    (run_id,) = _run_ids(store)
    shown = rota("runs", "show", run_id[:12], env=env)
    assert shown.code == 0, shown
    assert re.search(r"fit\[1\]\s+failed", shown.out), shown.out
    assert "TaskTimeout" in shown.out and "MappedInstancesFailed" not in shown.out
    assert "fit[0]" not in shown.out  # instances that succeeded are counted, not listed
    assert "3 instances" in shown.out
    for name in ("fit[1]", "fit@1"):
        logs = rota("tasks", "logs", run_id[:12], name, env=env)
        assert logs.code == 0, logs
        assert "fitting 1" in logs.out and "fitting 0" not in logs.out
    whole = rota("tasks", "logs", run_id, "fit", env=env)
    assert whole.code == 2, whole
    assert "is mapped" in whole.err and "fit[1]" in whole.err  # names the failed instance
    last = rota("tasks", "logs", "--last", "mapped", "fit[2]", env=env)
    assert last.code == 0 and "fitting 2" in last.out, last
    output = rota("outputs", "show", "--last", "fit[2]", env=env)
    assert output.code == 0 and "20" in output.out, output
    nothing = rota("tasks", "logs", run_id, "fit[7]", env=env)
    assert nothing.code == 2 and "no instance 7" in nothing.err, nothing


def test_clear_of_one_instance_runs_only_it_again(
    rota: RotaCli, write_flow: WriteFlow, tmp_path: Path, store: SqlStore
) -> None:
    _said, env = _failed_mapped_run(rota, write_flow, tmp_path)
    (tmp_path / "fixed").touch()
    (run_id,) = _run_ids(store)
    resumed = rota("resume", "--last", "mapped", "--json", env=env)
    assert resumed.code == 0, resumed
    cleared = rota("clear", run_id[:10], "--task", "fit[2]", env=env)
    assert cleared.code == 0, cleared
    again = rota("resume", run_id[:10], "--json", env=env)
    assert again.code == 0, again
    tries = {(a.map_index, a.try_number) for a in store.attempts(run_id) if a.task_id == "fit"}
    assert (2, 2) in tries and (0, 2) not in tries and (1, 3) not in tries, tries
    wrong = rota("clear", run_id, "--task", "fit[9]", env=env)
    assert wrong.code == 2 and "no instance 9" in wrong.err, wrong


def test_resume_p_changes_a_param_for_the_re_run_tasks_and_records_it(
    rota: RotaCli, write_flow: WriteFlow, tmp_path: Path, store: SqlStore
) -> None:
    path = write_flow("tuned.py", PARAMS)
    env = {**NARROW, "FIXED": str(tmp_path / "fixed")}
    assert rota("run", str(path), env=env).code == 1
    (tmp_path / "fixed").touch()
    resumed = rota("resume", "--last", "tuned", "-p", "threshold=0.9", "--json", env=env)
    assert resumed.code == 0, resumed
    assert "parameter threshold: 0.5 -> 0.9" in resumed.err
    (run_id,) = _run_ids(store)
    run = store.get_run(run_id)
    assert run.params["threshold"] == 0.9
    (change,) = run.param_changes or []
    assert change["changes"] == {"threshold": {"from": 0.5, "to": 0.9}}
    second = rota("outputs", "show", run_id, "second", env=env)
    assert "1.4" in second.out, second  # first kept its 0.5; second ran with 0.9
    shown = rota("runs", "show", run_id, env=env)
    assert "params changed by a resume" in shown.out and "0.9" in shown.out


RETRIED = """
import os
from datetime import timedelta
from pathlib import Path
from rota import flow, task

LEDGER = Path(os.environ["LEDGER"])


@task(retries=2, retry_delay=timedelta(seconds=1))
def flaky() -> int:
    tries = len(LEDGER.read_text().split()) if LEDGER.exists() else 0
    LEDGER.write_text("x " * (tries + 1))
    if tries == 0:
        raise ValueError("first try fails\\nsecond line of the error")
    return tries


@flow
def retried():
    flaky()
"""


def test_runs_show_lists_each_attempt_with_its_error_line_and_the_wait_before_the_retry(
    rota: RotaCli, write_flow: WriteFlow, tmp_path: Path, store: SqlStore
) -> None:
    path = write_flow("retried.py", RETRIED)
    env = {**NARROW, "LEDGER": str(tmp_path / "ledger")}
    assert rota("run", str(path), env=env).code == 0
    shown = rota("runs", "show", "--last", "retried", env=env)
    assert shown.code == 0, shown
    lines = shown.out.splitlines()
    (first,) = [ln for ln in lines if "try 1" in ln]
    (second,) = [ln for ln in lines if "try 2" in ln]
    assert "up_for_retry" in first and "ValueError: first try fails" in first, shown.out
    assert "second line" not in shown.out  # the error's first line only
    assert "success" in second and "(retried after 1.00s)" in second, shown.out
    assert re.search(r"try 1\s+up_for_retry\s+\d\d:\d\d:\d\d\s+\d+\.\d\ds", first), first


def test_runs_show_json_names_each_failed_instance_and_its_own_error(
    rota: RotaCli, write_flow: WriteFlow, tmp_path: Path, store: SqlStore
) -> None:
    _said, env = _failed_mapped_run(rota, write_flow, tmp_path)
    shown = rota("runs", "show", "--last", "mapped", "--json", env=env)
    assert shown.code == 0, shown
    (failed,) = shown.json()["tasks"]["fit"]["failed_instances"]
    assert (failed["index"], failed["attempt"], failed["error_type"]) == (1, 1, "TaskTimeout")
