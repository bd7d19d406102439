"""The end of a large run is a digest, not a row per task; runs show and runs list are paged."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clihelp import RotaCli

from rota.store.sql import SqlStore

BIG = """
from rota import flow, task

@task
def leaf(i: int) -> int:
    if i in (5, 18, 31):
        raise ValueError(f"bad [red]{i}[/red]")
    return i

@flow
def big():
    for i in range(40):
        leaf(i)
"""

_TREE_ROW = re.compile(r"^\W*leaf__\d+\s+success\s+\d\d:\d\d:\d\d", re.M)
"""A line of the per-task tree: ``├── leaf__12  success  07:32:17  0.01s``."""


def test_a_large_run_ends_with_a_digest_and_resume_tasks_with_every_task(
    rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    done = rota("run", str(write_flow("big.py", BIG)))
    assert done.code == 1, done
    run_id = re.search(r"run (\S+) of flow big started", done.err)
    assert run_id, done.err
    header = f"run {run_id[1]} · flow big · failed"
    assert header in done.out.splitlines()  # the line scripts grep is unchanged
    assert "40 tasks: 37 success, 3 failed" in done.out
    assert "slowest:" in done.out
    assert _TREE_ROW.search(done.out) is None  # no row per task
    failures = [ln for ln in done.err.splitlines() if "ValueError" in ln]
    assert failures == [
        "leaf__5 (attempt 1): ValueError: bad [red]5[/red]",  # markup printed as text
        "leaf__18 (attempt 1): ValueError: bad [red]18[/red]",
        "leaf__31 (attempt 1): ValueError: bad [red]31[/red]",
    ]
    assert f"rota runs show {run_id[1]}" in done.out

    again = rota("resume", run_id[1], "--tasks")
    assert again.code == 1, again
    assert len(_TREE_ROW.findall(again.out)) == 36  # every task but leaf (no __n) and 3 failed
    assert "40 tasks:" not in again.out


def test_runs_show_of_a_large_run_is_a_digest_and_a_page(
    rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    assert rota("run", str(write_flow("big.py", BIG))).code == 1
    shown = rota("runs", "show", "--last", "big", "--limit", "5", "--offset", "10")
    assert shown.code == 0, shown
    assert "40 tasks: 37 success, 3 failed" in shown.out
    names = re.findall(r"^\W*── (leaf__\d+)\s", shown.out, re.M)  # the tree's lines
    failed = ["leaf__5", "leaf__18", "leaf__31"]
    assert names == [f"leaf__{i}" for i in range(10, 15)]  # the page, in the flow's order
    assert all(f"{name} (attempt 1): ValueError" in shown.out for name in failed)
    assert "tasks 11-15 of 40; next: rota runs show" in shown.out
    assert "--offset 15 --limit 5" in shown.out
    whole = rota("runs", "show", "--last", "big", "--json")
    assert len(whole.json()["tasks"]) == 40  # --json still names every task


def test_runs_list_shows_a_page_and_says_where_the_next_is(rota: RotaCli, store: SqlStore) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(5):
        store.create_run(f"run-{i}", "nightly", {}, [], t0 + timedelta(hours=i))
    first = rota("runs", "list", "--limit", "2", "--json")
    assert [r["run_id"] for r in first.json()] == ["run-4", "run-3"]
    assert "more runs: rota runs list --offset 2 --limit 2" in first.err
    last = rota("runs", "list", "--limit", "2", "--offset", "4")
    assert "run-0" in last.out and "run-1" not in last.out
    assert "more runs" not in last.err
    assert rota("runs", "list", "--offset", "-1").code == 2


MAPPED = """
from rota import flow, task

@task
def items() -> list[int]:
    return list(range(40))

@task
def one(i: int) -> int:
    if i in (3, 17):
        raise KeyError(f"no {i}")
    return i

@flow
def mapped():
    one.map(items())
"""


def test_a_run_with_a_large_map_is_a_digest_naming_the_failed_instances(
    rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    done = rota("run", str(write_flow("mapped.py", MAPPED)))
    assert done.code == 1, done
    for said in (done.out, rota("runs", "show", "--last", "mapped").out):
        assert "2 tasks: 1 success, 1 failed" in said
        assert "40 mapped instances: 38 success, 2 failed" in said
    assert "one[3] (attempt 1): KeyError: 'no 3'" in done.err
    assert "one[17] (attempt 1): KeyError: 'no 17'" in done.err
    shown = rota("runs", "show", "--last", "mapped")
    assert re.findall(r"── (one\[\d+\])\s+failed", shown.out) == ["one[3]", "one[17]"]
