"""``rota tasks test``: one task run alone with the outputs an earlier run stored for its
upstreams, recording nothing (no row, no artifact, no log, no checkpoint)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from clihelp import RotaCli

FLOW = """
from pathlib import Path
from rota import Secret, flow, task

@task
def extract(n: int) -> list[int]:
    return list(range(1, n + 1))

@task
def square(x: int) -> int:
    return x * x

@task
def total(xs: list[int], squares: list[int], scale: float, ctx) -> dict:
    ctx.checkpoint.save(len(xs))
    print("adding up", len(squares), "squares")
    day = ctx.logical_date.date().isoformat()
    return {"sum": sum(squares) * scale, "run": ctx.run_id, "day": day}

@task
def token_echo(token) -> str:
    return "token is " + token

@task
def broken(xs: list[int]) -> None:
    raise ValueError(f"broken on {len(xs)} items")

@flow(schedule="@daily", timezone="UTC")
def numbers(n: int = 3, scale: float = 1.0, token: str = Secret("TT_TOKEN")):
    xs = extract(n)
    total(xs, square.map(xs), scale)
    token_echo(token)
"""

BROKEN = """
from rota import flow, task

@task
def extract() -> list[int]:
    return [1, 2]

@task
def broken(xs: list[int]) -> None:
    raise ValueError(f"broken on {len(xs)} items")

@flow
def breaks():
    broken(extract())
"""


def snapshot(home: Path) -> dict[str, object]:
    """Every row of every table of the store, and every file under ROTA_HOME but the database."""
    with sqlite3.connect(home / "rota.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {t: sorted(map(repr, db.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    files = sorted(
        str(p.relative_to(home))
        for p in home.rglob("*")
        if p.is_file() and not p.name.startswith("rota.db")
    )
    return {"rows": rows, "files": files}


def test_tasks_test_uses_a_runs_outputs_and_records_nothing(
    rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("numbers.py", FLOW)
    env = {"TT_TOKEN": "s3cr3t-value"}
    run = rota("run", str(path), "-p", "n=3", "--logical-date", "2026-03-01", "--json", env=env)
    assert run.code == 0, run.err
    run_id = run.json()["run_id"]
    before = snapshot(home)
    assert before["files"], "the run wrote outputs and logs"

    tested = rota(
        "tasks", "test", f"{path}:numbers", "total", "--run", run_id, "-p", "scale=2", env=env
    )
    assert tested.code == 0, tested.err
    assert "adding up 3 squares" in tested.out  # the task prints here
    assert f"'sum': 28.0, 'run': '{run_id}', 'day': '2026-03-01'" in tested.out
    assert "nothing is recorded" in tested.err
    one = rota("tasks", "test", str(path), "square[2]", "--run", run_id, env=env)
    assert one.code == 0, one.err
    assert "square[2] → 9" in one.out
    secret = rota("tasks", "test", str(path), "token_echo", "--run", run_id, env=env)
    assert secret.code == 0, secret.err
    assert "token is ***" in secret.out and "s3cr3t-value" not in secret.out

    assert snapshot(home) == before  # no row, output, log or checkpoint was written


def test_tasks_test_by_logical_date_and_without_a_run(
    rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("numbers.py", FLOW)
    env = {"TT_TOKEN": "t"}
    alone = rota("tasks", "test", str(path), "extract", "-p", "n=2", env=env)
    assert alone.code == 0, alone.err
    assert "extract → [1, 2]" in alone.out
    assert not (home / "rota.db").exists()  # no store was made to test a task
    needs = rota("tasks", "test", str(path), "total", env=env)
    assert needs.code == 2
    assert "reads the output of 'extract', 'square': give --run RUN_ID" in needs.err
    assert "Traceback" not in needs.err

    run = rota("run", str(path), "--logical-date", "2026-03-02", "--json", env=env)
    assert run.code == 0, run.err
    before = snapshot(home)
    dated = rota("tasks", "test", str(path), "total", "--logical-date", "2026-03-02", env=env)
    assert dated.code == 0, dated.err
    assert "'sum': 14.0" in dated.out and "'day': '2026-03-02'" in dated.out
    assert snapshot(home) == before


def test_tasks_test_errors_are_one_line_and_a_failure_exits_1(
    rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("breaks.py", BROKEN)
    run = rota("run", str(path), "--json")
    assert run.code == 1
    run_id = run.json()["run_id"]
    before = snapshot(home)
    failed = rota("tasks", "test", str(path), "broken", "--run", run_id)
    assert failed.code == 1
    assert "broken failed: ValueError: broken on 2 items" in failed.err
    for bad, says in [
        (("nope", "--run", run_id), "has no task 'nope'"),
        (("extract[1]",), "is not mapped"),
        (("broken", "--run", "no-such-run"), "no-such-run"),
        (("broken", "--run", run_id, "--logical-date", "2026-01-01"), "not both"),
    ]:
        res = rota("tasks", "test", str(path), *bad)
        assert res.code == 2, (bad, res.err)
        assert says in res.err and "Traceback" not in res.err
    assert snapshot(home) == before
