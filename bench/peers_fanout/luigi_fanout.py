"""The suite's fan-out (F2K) in Luigi: root -> N leaves each returning a small int -> a join.

Usage: python luigi_fanout.py [--n 2000] [--workers 1] [--state-dir DIR]

Run with a Python that has Luigi installed (the suite's peer virtualenv). Mode:
``luigi.build(..., local_scheduler=True, workers=N)``. Luigi decides that a task is done from
its output target, so each leaf "returns" its int by writing it to its own LocalTarget file,
and the join reads every leaf's file and checks it got 0..N-1. Targets go to a new directory
under --state-dir (default: the system's temporary directory).

Prints one JSON line: tool, version, mode, workload, n_tasks, run_s (perf_counter around
``luigi.build`` only), ms_per_task, ok (the build succeeded, the join saw every value and every
task left its target) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from typing import Any

import luigi  # type: ignore[import-not-found]

WHERE = {"outdir": ""}  # set in main(); Luigi's worker processes (workers > 1) inherit it
N = 2000


class Root(luigi.Task):  # type: ignore[misc]
    def output(self) -> Any:
        return luigi.LocalTarget(os.path.join(WHERE["outdir"], "root"))

    def run(self) -> None:
        with self.output().open("w") as fh:
            fh.write("")


class Leaf(luigi.Task):  # type: ignore[misc]
    i = luigi.IntParameter()

    def requires(self) -> Any:
        return Root()

    def output(self) -> Any:
        return luigi.LocalTarget(os.path.join(WHERE["outdir"], f"leaf_{self.i}"))

    def run(self) -> None:
        with self.output().open("w") as fh:
            fh.write(str(self.i))


class Join(luigi.Task):  # type: ignore[misc]
    n = luigi.IntParameter()

    def requires(self) -> Any:
        return [Leaf(i=i) for i in range(self.n)]

    def output(self) -> Any:
        return luigi.LocalTarget(os.path.join(WHERE["outdir"], "join"))

    def run(self) -> None:
        values = []
        for target in self.input():
            with target.open("r") as fh:
                values.append(int(fh.read()))
        if values != list(range(self.n)):
            raise ValueError("the join did not receive every leaf's value")
        with self.output().open("w") as fh:
            fh.write(str(sum(values)))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=N)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--state-dir", default=None)
    a = ap.parse_args(argv)
    if a.state_dir:
        os.makedirs(a.state_dir, exist_ok=True)
    WHERE["outdir"] = outdir = tempfile.mkdtemp(prefix="luigi_fanout_", dir=a.state_dir)
    t0 = time.perf_counter()
    res = luigi.build(
        [Join(n=a.n)],
        local_scheduler=True,
        workers=a.workers,
        log_level="WARNING",
        detailed_summary=True,
    )
    run_s = time.perf_counter() - t0
    n_tasks = a.n + 2
    ok = res.status.name in ("SUCCESS", "SUCCESS_WITH_RETRY") and len(os.listdir(outdir)) == n_tasks
    rec = {
        "tool": "luigi",
        "version": luigi.__version__,
        "mode": f"local_scheduler,workers={a.workers}",
        "workload": f"fanout-{a.n}",
        "n_tasks": n_tasks,
        "run_s": round(run_s, 4),
        "ms_per_task": round(run_s * 1000 / n_tasks, 4),
        "ok": ok,
        "status": res.status.name,
        "maxrss_self_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(rec))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
