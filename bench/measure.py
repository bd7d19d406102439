"""How the suite measures Rota: in-run (perf_counter around ``Runner.run``) and whole process.

In-run: each workload runs in a child process of its own (``suite.py --single KEY``), so the
peak RSS it reports is its own: ``RUSAGE_SELF`` is the runner, ``RUSAGE_CHILDREN`` the largest
of its finished children (the local executor's forked workers). Every run gets a fresh
ROTA_HOME with a new SQLite store, a fresh executor (local, 2 workers unless told otherwise)
and a freshly built graph; only ``Runner.run`` is timed.

Whole process: ``python -m rota run bench/flows.py:<flow>`` with ``rota run``'s defaults (no
flags) in a fresh ROTA_HOME, timed from just before the interpreter is started to its exit.
While it runs, ``/proc/<pid>/status`` is sampled every 20 ms for the peak RSS so far
(``VmHWM``) of the runner and of each of its descendants (the largest of those is the
"largest worker"); ``wait4``'s ``ru_maxrss`` is the exact peak of the largest single process.
Afterwards the run is checked in the store the process left behind.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workloads import Workload, check_run

from rota.engine.runner import FlowRef, Runner
from rota.executors.base import Executor
from rota.model.schedule import SystemClock
from rota.store.sql import open_store

BENCH = Path(__file__).resolve().parent
MIB = 1024.0  # ru_maxrss and VmHWM are in KiB on Linux


def make_executor(kind: str, workers: int, logs_dir: Path) -> Executor:
    """The executor named *kind*; created before any thread or store (local workers fork)."""
    if kind == "local":
        from rota.executors.pool import LocalPoolExecutor

        return LocalPoolExecutor(workers, str(logs_dir))
    from rota.executors.threads import InProcessExecutor, ThreadExecutor

    return ThreadExecutor(workers) if kind == "threads" else InProcessExecutor()


@dataclass(frozen=True)
class RunResult:
    run_s: float
    build_s: float
    check: dict[str, Any]
    cpu_runner_s: float = 0.0
    """CPU seconds (user + system, every thread) of this process inside Runner.run."""
    cpu_workers_s: float = 0.0
    """CPU seconds of the executor's worker processes over their life (counted once reaped)."""


def cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def timed_run(wl: Workload, kind: str, workers: int) -> RunResult:
    """One run of *wl* in a fresh ROTA_HOME, timed around Runner.run only."""
    t0 = time.perf_counter()
    dag = wl.definition.build(wl.params)
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="rota_bench_") as tmp:
        home = Path(tmp)
        kids0 = cpu_s(resource.RUSAGE_CHILDREN)
        ex = make_executor(kind, workers, home / "logs")
        store = open_store(f"sqlite:///{home}/rota.db")
        try:
            runner = Runner(store, ex, home=home, clock=SystemClock())
            t0, cpu0 = time.perf_counter(), cpu_s(resource.RUSAGE_SELF)
            summary = runner.run(dag, FlowRef(wl.definition.name))
            run_s, cpu = time.perf_counter() - t0, cpu_s(resource.RUSAGE_SELF) - cpu0
            check = check_run(store, summary.run_id, wl)
        finally:
            ex.close()
            store.close()
    return RunResult(run_s, build_s, check, cpu, cpu_s(resource.RUSAGE_CHILDREN) - kids0)


def max_rss_mib(who: int) -> float:
    return round(resource.getrusage(who).ru_maxrss / MIB, 1)


def in_run(wl: Workload, kind: str, workers: int, repeat: int) -> dict[str, Any]:
    """A warm-up, then *repeat* measured runs of *wl* in this process; one JSON-able record."""
    warm = [] if wl.large else [timed_run(wl, kind, workers)]  # large ones: no warm-up
    runs = [timed_run(wl, kind, workers) for _ in range(repeat)]
    times = [r.run_s for r in runs]
    median = statistics.median(times)
    rec: dict[str, Any] = {
        "tool": "rota",
        "mode": "in-run",
        "workload": wl.key,
        "n_tasks": wl.n_tasks,
        "units": wl.units,
        "executor": f"{kind}/{workers}",
        "n_runs": repeat,
        "s": round(median, 4),
        "s_all": [round(t, 4) for t in times],
        "ms_per_task": round(median * 1000 / wl.units, 4),
        "build_s": round(statistics.median(r.build_s for r in runs), 4),
        "cpu_runner_ms_per_task": _per(statistics.median(r.cpu_runner_s for r in runs), wl),
        "cpu_workers_ms_per_task": _per(statistics.median(r.cpu_workers_s for r in runs), wl),
        "ok": all(r.check["ok"] for r in [*warm, *runs]),
        "rss_runner_mib": max_rss_mib(resource.RUSAGE_SELF),
        "rss_worker_mib": max_rss_mib(resource.RUSAGE_CHILDREN),
    }
    if wl.key == "L1":
        rec.update(_median_latency([r.check for r in runs]))
    return rec


def _per(seconds: float, wl: Workload) -> float:
    return round(seconds * 1000 / wl.units, 4)


def _median_latency(checks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median over runs of each latency figure (L1)."""
    keys = [f"{n}_{p}_ms" for n in ("latency", "latency_finish") for p in ("p50", "p99", "max")]
    have = [c for c in checks if "latency_p50_ms" in c]
    if not have:
        return {}
    return {k: round(statistics.median(c[k] for c in have), 3) for k in keys if k in have[0]}


def run_child(key: str, args: Sequence[str]) -> dict[str, Any]:
    """In-run figures of workload *key*, measured in a fresh interpreter (its last JSON line)."""
    import json

    cmd = [sys.executable, str(BENCH / "suite.py"), "--single", key, *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if not lines:
        return {
            "tool": "rota",
            "mode": "in-run",
            "workload": key,
            "ok": False,
            "error": f"exit status {proc.returncode}, no output",
        }
    rec: dict[str, Any] = json.loads(lines[-1])
    return rec


# --- whole processes -----------------------------------------------------------------------------
def _hwm_kib(pid: int) -> int:
    """The peak RSS so far (VmHWM) of process *pid*, 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0


def _children(pid: int) -> list[int]:
    """Every descendant of *pid* (from /proc/<pid>/task/*/children)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                kids = [int(x) for x in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
            except (OSError, ValueError):
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


class RssSampler:
    """Samples the peak RSS of a process and of its largest descendant until told to stop."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid = pid
        self.every = every
        self.runner_kib = 0
        self.worker_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.runner_kib = max(self.runner_kib, _hwm_kib(self.pid))
            for kid in _children(self.pid):
                self.worker_kib = max(self.worker_kib, _hwm_kib(kid))
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Timed:
    wall_s: float
    code: int
    maxrss_kib: int
    runner_kib: int
    worker_kib: int
    cpu_s: float = 0.0
    """User + system CPU seconds of the process and every descendant it reaped."""


def wait_timed(
    cmd: Sequence[str], env: dict[str, str], out: Path, cwd: Path | None = None
) -> Timed:
    """Run *cmd* to its end, sampling its memory; wall time from before the exec to the exit."""
    with out.open("w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd)
        sampler = RssSampler(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return Timed(
        wall, proc.returncode, usage.ru_maxrss, sampler.runner_kib, sampler.worker_kib, cpu
    )


def fresh_env(home: str) -> dict[str, str]:
    """The environment of a whole-process run: a fresh ROTA_HOME, no store or executor set,
    and Python's bytecode cache on. An installed rota has its modules compiled (the installer
    does it); an environment with PYTHONDONTWRITEBYTECODE would have every process compile
    them from source again (a tenth of a second), which no user pays. The warm-up process
    writes the cache of an editable install."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTA_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["ROTA_HOME"] = home
    return env


def rota_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "rota", *args]


def whole_once(wl: Workload) -> tuple[Timed, dict[str, Any]]:
    """One ``rota run bench/flows.py:<flow>`` with the defaults, then its run checked."""
    with tempfile.TemporaryDirectory(prefix="rota_bench_proc_") as tmp:
        cmd = rota_cmd("run", str(BENCH / wl.target))
        for k, v in wl.params.items():
            cmd += ["-p", f"{k}={v}"]
        timed = wait_timed(cmd, fresh_env(tmp), Path(tmp) / "stdout.txt")
        store = open_store(f"sqlite:///{tmp}/rota.db")
        try:
            run_id = store.newest_run_id(wl.definition.name)
            check = check_run(store, run_id, wl) if run_id else {"ok": False}
        finally:
            store.close()
    check["ok"] = check["ok"] and timed.code == 0
    return timed, check


def whole(wl: Workload, repeat: int) -> dict[str, Any]:
    """A warm-up process (not for the large ones), then *repeat* timed ones; one record."""
    warm = [] if wl.large else [whole_once(wl)]
    runs = [whole_once(wl) for _ in range(repeat)]
    walls = [t.wall_s for t, _ in runs]
    median = statistics.median(walls)
    rec: dict[str, Any] = {
        "tool": "rota",
        "mode": "whole-process",
        "workload": wl.key,
        "n_tasks": wl.n_tasks,
        "units": wl.units,
        "executor": "rota run defaults",
        "n_runs": repeat,
        "s": round(median, 4),
        "s_all": [round(w, 4) for w in walls],
        "ms_per_task": round(median * 1000 / wl.units, 4),
        "ok": all(c["ok"] for _, c in [*warm, *runs]),
        "rss_runner_mib": round(max(t.runner_kib for t, _ in runs) / MIB, 1),
        "rss_worker_mib": round(max(t.worker_kib for t, _ in runs) / MIB, 1),
        "rss_largest_mib": round(max(t.maxrss_kib for t, _ in runs) / MIB, 1),
        "cpu_ms_per_task": _per(statistics.median(t.cpu_s for t, _ in runs), wl),
    }
    if wl.key == "L1":
        rec.update(_median_latency([c for _, c in runs]))
    return rec


def startup(repeat: int) -> list[dict[str, Any]]:
    """Median wall time of ``rota --help`` and of a one-task ``rota run`` (whole processes)."""
    out = []
    for name, args in (("rota --help", ("--help",)), ("one-task rota run", ("run", "ONE"))):
        walls, ok = [], True
        for i in range(repeat + 1):  # the first is a warm-up
            with tempfile.TemporaryDirectory(prefix="rota_bench_start_") as tmp:
                argv = [str(BENCH / "flows.py:one") if a == "ONE" else a for a in args]
                t = wait_timed(rota_cmd(*argv), fresh_env(tmp), Path(tmp) / "out.txt")
            ok = ok and t.code == 0
            if i:
                walls.append(t.wall_s)
        med = statistics.median(walls)
        out.append(
            {
                "tool": "rota",
                "mode": "whole-process",
                "workload": name,
                "n_runs": repeat,
                "s": round(med, 4),
                "s_all": [round(w, 4) for w in walls],
                "ok": ok,
            }
        )
    return out
