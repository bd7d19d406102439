"""In-run ms/task of the local pool's hot path: F2K (root -> 2,000 leaves returning a small int ->
join) and W2 (root -> 1,000 no-ops -> join), each in a fresh ROTA_HOME, timed around Runner.run.

Usage: python bench/pool_fanout.py [--workload F2K,W2] [--workers 2] [--repeat 5] [--prefetch N]

One uncounted warm-up run per workload, then ``--repeat`` measured runs; prints one JSON line
per workload with the median, min and max. ``--prefetch`` fixes the pool's per-worker depth
(default: the pool's own policy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rota import PythonTask, flow
from rota.engine.runner import FlowRef, Runner
from rota.executors.pool import LocalPoolExecutor
from rota.model.flows import FlowFunction
from rota.model.schedule import SystemClock
from rota.store.sql import open_store


def noop() -> None:
    """A W2 task."""


def small() -> int:
    """An F2K leaf: a small int output."""
    return 7


@flow(name="f2k")
def f2k() -> None:
    """root -> 2,000 leaves returning a small int -> join."""
    root = PythonTask("root", noop)
    join = PythonTask("join", noop)
    for i in range(2000):
        root >> PythonTask(f"leaf_{i}", small) >> join


@flow(name="w2")
def w2() -> None:
    """root -> 1,000 no-ops -> join."""
    root = PythonTask("root", noop)
    join = PythonTask("join", noop)
    for i in range(1000):
        root >> PythonTask(f"leaf_{i}", noop) >> join


FLOWS: dict[str, tuple[FlowFunction, int]] = {"F2K": (f2k, 2002), "W2": (w2, 1002)}


def one_run(definition: FlowFunction, workers: int, prefetch: int | None) -> float:
    """Seconds inside Runner.run for one run in a fresh home."""
    dag = definition.build()
    with tempfile.TemporaryDirectory(prefix="rota_pool_bench_") as tmp:
        home = Path(tmp)
        extra: dict[str, Any] = {} if prefetch is None else {"prefetch": prefetch}
        ex = LocalPoolExecutor(workers, str(home / "logs"), **extra)
        store = open_store(f"sqlite:///{home}/rota.db")
        try:
            runner = Runner(store, ex, home=home, clock=SystemClock())
            t0 = time.perf_counter()
            summary = runner.run(dag, FlowRef(definition.name))
            took = time.perf_counter() - t0
            if summary.state.value != "success":
                raise RuntimeError(f"run ended {summary.state.value}")
        finally:
            ex.close()
            store.close()
    return took


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="F2K,W2")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--prefetch", type=int, default=None)
    args = ap.parse_args(argv)
    for key in args.workload.split(","):
        definition, n = FLOWS[key]
        one_run(definition, args.workers, args.prefetch)
        times = [one_run(definition, args.workers, args.prefetch) for _ in range(args.repeat)]
        ms = [t * 1000 / n for t in times]
        rec = {
            "workload": key,
            "tasks": n,
            "workers": args.workers,
            "ms_per_task_median": round(statistics.median(ms), 3),
            "ms_per_task_min": round(min(ms), 3),
            "ms_per_task_max": round(max(ms), 3),
        }
        print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
