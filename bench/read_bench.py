"""Time the read side at scale: `rota runs show` of a 100,000-task run and `rota runs list` over
100,000 runs in one SQLite store, as whole `rota` processes and as the store calls alone.

Usage: python bench/read_bench.py [--tasks N] [--runs N] [--repeat N] [--keep DIR]

The store is filled with bulk inserts through SQLAlchemy Core (it is a benchmark: the rows are
what the engine would write, not written by running anything): one run of --tasks tasks, of
which one in a thousand failed and one in a hundred took a second try, and --runs runs of other
flows. Prints the median and the range of --repeat timings of each command; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from rota.store.sql import SqlStore, open_store
from rota.store.tables import runs, task_attempts

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BIG_RUN = "20260101T000000-bigrun0000"
_BATCH = 5_000


def _attempt(task: int, try_number: int, state: str, seconds: float) -> dict[str, Any]:
    started = T0 + timedelta(seconds=task / 1000)
    failed = state == "failed"
    return {
        "run_id": BIG_RUN, "task_id": f"task_{task:06d}", "map_index": -1,
        "try_number": try_number, "state": state, "operator": "python", "code_hash": "h",
        "queued_at": started, "started_at": started,
        "finished_at": started + timedelta(seconds=seconds), "committed_at": started,
        "error_type": "ValueError" if failed else None,
        "error_message": f"task {task} failed" if failed else None,
    }  # fmt: skip


def _big_run_rows(tasks: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(tasks):
        if i % 100 == 7:  # a retry: the first try failed, the second succeeded
            rows.append(_attempt(i, 1, "up_for_retry", 0.01))
            rows.append(_attempt(i, 2, "success", 0.02))
        else:
            rows.append(_attempt(i, 1, "failed" if i % 1000 == 3 else "success", 0.001 * (i % 97)))
    return rows


def _run_row(run_id: str, flow: str, at: datetime, state: str) -> dict[str, Any]:
    return {
        "run_id": run_id, "flow": flow, "state": state, "params": {}, "created_at": at,
        "started_at": at, "ended_at": at + timedelta(seconds=3), "run_type": "manual",
    }  # fmt: skip


def _insert(store: SqlStore, table: Any, rows: list[dict[str, Any]]) -> None:
    with store.engine.begin() as conn:
        for start in range(0, len(rows), _BATCH):
            conn.execute(insert(table), rows[start : start + _BATCH])


def fill(store: SqlStore, tasks: int, n_runs: int) -> None:
    """One run of *tasks* tasks, then *n_runs* runs of ten flows (newer than the big run)."""
    _insert(store, runs, [_run_row(BIG_RUN, "big", T0, "failed")])
    _insert(store, task_attempts, _big_run_rows(tasks))
    others = [
        _run_row(f"run-{i:07d}", f"flow_{i % 10}", T0 + timedelta(minutes=i + 1), "success")
        for i in range(n_runs)
    ]
    _insert(store, runs, others)


def _timed(action: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def _rota(home: Path, *args: str) -> Callable[[], object]:
    env = {**os.environ, "ROTA_HOME": str(home), "COLUMNS": "120"}
    env.pop("ROTA_DATABASE_URL", None)

    def run() -> None:
        done = subprocess.run(
            [sys.executable, "-m", "rota", *args], env=env, capture_output=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"rota {' '.join(args)} exited {done.returncode}: {done.stderr!r}")

    return run


def _say(name: str, times: list[float]) -> None:
    print(
        f"{name:48s} median {statistics.median(times):7.3f}s  "
        f"min {min(times):7.3f}s  max {max(times):7.3f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="Fill (or reuse) the store in this folder.")
    args = parser.parse_args()
    home = args.keep or Path(tempfile.mkdtemp(prefix="rota-read-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    fresh = not (home / "rota.db").exists()
    with open_store(f"sqlite:///{home}/rota.db") as store:
        if fresh:
            start = time.perf_counter()
            fill(store, args.tasks, args.runs)
            took = time.perf_counter() - start
            print(f"filled {args.tasks} tasks + {args.runs} runs in {took:.1f}s")
        _say("store: run_digest (big run)", _timed(lambda: store.run_digest(BIG_RUN), args.repeat))
        _say(
            "store: task_page 50 (big run)",
            _timed(lambda: store.task_page(BIG_RUN, 50), args.repeat),
        )
        page = _timed(lambda: store.task_page(BIG_RUN, 50, args.tasks // 2), args.repeat)
        _say("store: task_page 50 at the middle", page)
    for name, argv in (
        ("rota --help", ("--help",)),
        ("rota runs show BIG (digest + first 50)", ("runs", "show", BIG_RUN)),
        (
            "rota runs show BIG --offset middle",
            ("runs", "show", BIG_RUN, "--offset", str(args.tasks // 2)),
        ),
        ("rota runs list (first 50)", ("runs", "list")),
        ("rota runs list --offset 50000", ("runs", "list", "--offset", "50000")),
        ("rota runs list --flow flow_3", ("runs", "list", "--flow", "flow_3")),
        ("rota runs list --json", ("runs", "list", "--json")),
    ):
        _say(name, _timed(_rota(home, *argv), args.repeat))
    print(f"store: {home / 'rota.db'}")


if __name__ == "__main__":
    main()
