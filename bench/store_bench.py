"""Time the store's hot paths: create_run with 10,000 tasks and apply() of 1,000 changes.

Usage: python bench/store_bench.py [POSTGRES_URL]

Always measures a SQLite file in a temporary folder; also PostgreSQL when a URL is given (its
tables are created if missing; the benchmark's runs are left in it). Prints the median of a few
repetitions, and the time to reopen an already-migrated store (the CLI's start-up cost).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

from rota.model.states import TaskState
from rota.store.base import Change, NewTask
from rota.store.sql import SqlStore, open_store

TASKS = 10_000
CHANGES = 1_000
REPEAT = 5


def _timed(action: Callable[[], object]) -> float:
    """Seconds taken by *action*."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _bench_create(store: SqlStore, tag: str) -> float:
    """Median seconds to create a run of TASKS tasks."""
    tasks = [NewTask(f"task-{i}", "python", "0" * 64) for i in range(TASKS)]
    now = datetime.now(UTC)
    times = [
        _timed(lambda i=i: store.create_run(f"{tag}-create-{i}", "bench", {}, tasks, now))
        for i in range(REPEAT)
    ]
    return statistics.median(times)


def _bench_apply(store: SqlStore, tag: str) -> float:
    """Median seconds to apply CHANGES changes (scheduled -> queued, with a timestamp)."""
    now = datetime.now(UTC)
    tasks = [NewTask(f"task-{i}", "python", "h") for i in range(CHANGES)]
    times = []
    for i in range(REPEAT):
        store.create_run(f"{tag}-apply-{i}", "bench", {}, tasks, now)
        ids = [a.id for a in store.attempts(f"{tag}-apply-{i}")]
        queue = [Change(a, TaskState.SCHEDULED, TaskState.QUEUED, {"queued_at": now}) for a in ids]
        times.append(_timed(lambda queue=queue: store.apply(queue, at=now)))
    return statistics.median(times)


def bench(url: str) -> None:
    """Print the timings for the store at *url*."""
    tag = f"bench-{time.time_ns()}"
    first_open = _timed(lambda: open_store(url).close())
    reopen = statistics.median(_timed(lambda: open_store(url).close()) for _ in range(REPEAT))
    with open_store(url) as store:
        create = _bench_create(store, tag)
        apply = _bench_apply(store, tag)
    print(f"{url}")
    print(f"  open (first, migrating if needed) {first_open * 1000:8.1f} ms")
    print(f"  open (again, already migrated)    {reopen * 1000:8.1f} ms")
    print(f"  create_run with {TASKS:,} tasks     {create * 1000:8.1f} ms")
    print(f"  apply of {CHANGES:,} changes           {apply * 1000:8.1f} ms")


def main(argv: list[str]) -> None:
    """Run the benchmark on SQLite, then on the PostgreSQL URL in *argv*, if any."""
    with tempfile.TemporaryDirectory() as folder:
        bench(f"sqlite:///{folder}/rota.db")
    for url in argv[1:]:
        bench(url)


if __name__ == "__main__":
    main(sys.argv)
