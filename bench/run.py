"""Rota's orchestration overhead on the peers' workloads (see bench/README.md).

Usage: python bench/run.py [--executor local|threads|inprocess|dask] [--workers N]
                           [--workload W1,W2,W3,L10K,M10K] [--repeat N] [--cli] [--json]

Workloads (all tasks no-op Python functions unless said otherwise):

- W1: a linear chain of 200 tasks (ordering edges, ``a >> b``).
- W2: 1 root -> 1000 independent tasks -> 1 join (1002 tasks).
- W3: extract -> clean -> features -> train -> evaluate -> deploy, a list of 10,000 Python floats
  passed from each step to the next through data edges (the peers' exact step functions).
- L10K: 100 layers x 100 tasks; task i of layer k depends on tasks i and (i + 1) % 100 of
  layer k - 1 (10,000 tasks, 19,800 edges).
- M10K: a task returning range(10,000) as a list, a no-op mapped over it with ``.map`` (10,000
  instances made at run time, each output stored), and a join receiving the 10,000 results;
  ms/task is per mapped instance.

Each workload runs in its own child process (so its peak RSS is its own): one uncounted warm-up
run, then ``--repeat`` measured runs, each with a fresh temporary ROTA_HOME (SQLite file store),
a fresh executor, and ``time.perf_counter()`` around ``Runner.run`` only. ``--cli`` also times
whole ``rota run`` processes of W2 from the outside. The flows are module-level ``@flow``
functions, so ``rota run bench/run.py:w2`` works too.

``--executor dask`` starts one local Dask cluster per workload (``--workers`` one-thread worker
processes on 127.0.0.1, outside the timing) and each run gets a fresh DaskExecutor on it. For W2
it also times raw Dask on the same cluster in the same process: ``client.map`` of the same no-op
over 1,002 items plus ``gather`` (a warm-up, then ``--repeat`` runs), printed beside Rota's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rota import PythonTask, flow, task
from rota.artifacts.store import open_artifact_store
from rota.engine.report import RunSummary
from rota.engine.runner import FlowRef, Runner
from rota.executors.base import Executor
from rota.model.flows import FlowFunction
from rota.model.schedule import SystemClock
from rota.store.sql import open_store

N_CHAIN = 200
N_FAN = 1000
N_FLOATS = 10_000
N_MAP = 10_000
LAYERS = 100
WIDTH = 100
EXECUTORS = ("local", "threads", "inprocess", "dask")
MIB = 1024.0  # ru_maxrss is in KiB on Linux


# --- task functions (the peers' W3 steps, verbatim in effect) ------------------------------------
def noop() -> None:
    """A task that does nothing."""


@task
def extract() -> list[float]:
    return [i * 0.001 for i in range(N_FLOATS)]


@task
def clean(xs: list[float]) -> list[float]:
    return [x if x == x else 0.0 for x in xs]  # noqa: PLR0124 (NaN -> 0.0, as the peers)


@task
def features(xs: list[float]) -> list[float]:
    return [x * 2.0 + 1.0 for x in xs]


@task
def train(xs: list[float]) -> list[float]:
    w = sum(xs) / len(xs)
    return [x * w for x in xs]


@task
def evaluate(xs: list[float]) -> list[float]:
    return [x * 0.5 for x in xs]


@task
def deploy(xs: list[float]) -> dict[str, float]:
    assert len(xs) == N_FLOATS
    return {"n": len(xs), "checksum": round(sum(xs), 6)}


# --- flows ---------------------------------------------------------------------------------------
@flow(name="w1")
def w1() -> None:
    """A linear chain of N_CHAIN no-op tasks."""
    prev = PythonTask("step_0", noop)
    for i in range(1, N_CHAIN):
        prev = prev >> PythonTask(f"step_{i}", noop)


@flow(name="w2")
def w2() -> None:
    """root -> N_FAN independent no-ops -> join."""
    root = PythonTask("root", noop)
    join = PythonTask("join", noop)
    for i in range(N_FAN):
        root >> PythonTask(f"leaf_{i}", noop) >> join


@flow(name="w3")
def w3() -> None:
    """Six steps passing a list of N_FLOATS floats through data edges."""
    deploy(evaluate(train(features(clean(extract())))))


@flow(name="l10k")
def l10k() -> None:
    """LAYERS x WIDTH no-ops; each depends on tasks i and (i + 1) % WIDTH of the layer before."""
    prev = [PythonTask(f"t_0_{i}", noop) for i in range(WIDTH)]
    for k in range(1, LAYERS):
        layer = [PythonTask(f"t_{k}_{i}", noop) for i in range(WIDTH)]
        for i, node in enumerate(layer):
            [prev[i], prev[(i + 1) % WIDTH]] >> node
        prev = layer


@task
def items() -> list[int]:
    """The list a mapped task fans out over."""
    return list(range(N_MAP))


@task
def one(x: int) -> int:
    """A mapped instance: returns its element."""
    return x


@task
def join(xs: list[int]) -> int:
    """Receives every mapped result, in order."""
    return len(xs)


@flow(name="m10k")
def m10k() -> None:
    """One task fanned out over N_MAP elements at run time."""
    join(one.map(items()))


# --- workloads -----------------------------------------------------------------------------------
def _deploy_ok(summary: RunSummary) -> bool:
    rec = summary.tasks["deploy"].latest
    if not rec.output_path:
        return False
    store = open_artifact_store(rec.output_path)
    value = store.get(rec.output_path, rec.output_serializer or "pickle", producer="deploy")
    return bool(value.get("n") == N_FLOATS)


def _map_ok(summary: RunSummary) -> bool:
    return summary.tasks["one"].mapped == {"count": N_MAP, "success": N_MAP}


@dataclass(frozen=True)
class Workload:
    key: str
    definition: FlowFunction
    n_tasks: int
    extra_check: Callable[[RunSummary], bool] | None = None
    units: int = 0
    """What ms/task divides by, when not n_tasks (the mapped instances of M10K)."""


WORKLOADS: dict[str, Workload] = {
    "W1": Workload("W1", w1, N_CHAIN),
    "W2": Workload("W2", w2, N_FAN + 2),
    "W3": Workload("W3", w3, 6, _deploy_ok),
    "L10K": Workload("L10K", l10k, LAYERS * WIDTH),
    "M10K": Workload("M10K", m10k, 3, _map_ok, units=N_MAP),
}


def all_succeeded(summary: RunSummary, wl: Workload) -> bool:
    """The run and every one of its n_tasks tasks are recorded as succeeded (the peers' ``ok``)."""
    tasks = summary.tasks.values()
    ok = summary.state.value == "success" and len(tasks) == wl.n_tasks
    ok = ok and all(t.state.value == "success" for t in tasks)
    return ok and (wl.extra_check is None or wl.extra_check(summary))


# --- one workload, in this process ---------------------------------------------------------------
_CLUSTER: list[Any] = []  # the workload's local Dask cluster (dask only), started once


def dask_address(workers: int) -> str:
    """The address of this process's local Dask cluster of *workers* one-thread processes."""
    if not _CLUSTER:
        from distributed import LocalCluster

        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=50,
        )  # fmt: skip
        _CLUSTER.append(cluster)
    return str(_CLUSTER[0].scheduler_address)


def noop_item(_: int) -> None:
    """The W2 no-op, in the shape ``client.map`` calls it (one item)."""
    noop()


def raw_dask(workers: int, n: int, repeat: int) -> list[float]:
    """Seconds of ``gather(client.map(noop_item, range(n)))`` on the same cluster, per run."""
    from distributed import Client

    with Client(dask_address(workers), set_as_default=False) as client:
        times = []
        for i in range(repeat + 1):  # the first is a warm-up
            t0 = time.perf_counter()
            client.gather(client.map(noop_item, range(n), pure=False))
            if i:
                times.append(time.perf_counter() - t0)
    return times


def make_executor(kind: str, workers: int, logs_dir: Path) -> Executor:
    """The executor named *kind*; create it before any thread or store (local workers fork)."""
    if kind == "dask":
        from rota.executors.dask import DaskExecutor

        return DaskExecutor(dask_address(workers))
    if kind == "local":
        from rota.executors.pool import LocalPoolExecutor

        return LocalPoolExecutor(workers, str(logs_dir))
    from rota.executors.threads import InProcessExecutor, ThreadExecutor

    return ThreadExecutor(workers) if kind == "threads" else InProcessExecutor()


@dataclass(frozen=True)
class RunResult:
    run_s: float  # inside Runner.run: create the run, drive it, read its summary back
    build_s: float  # building the Dag from the flow definition (not in run_s)
    ok: bool


def timed_run(wl: Workload, kind: str, workers: int) -> RunResult:
    """One run of *wl* in a fresh ROTA_HOME, timed around Runner.run only."""
    t0 = time.perf_counter()
    dag = wl.definition.build()
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="rota_bench_") as tmp:
        home = Path(tmp)
        ex = make_executor(kind, workers, home / "logs")
        store = open_store(f"sqlite:///{home}/rota.db")
        try:
            runner = Runner(store, ex, home=home, clock=SystemClock())
            t0 = time.perf_counter()
            summary = runner.run(dag, FlowRef(wl.definition.name))
            run_s = time.perf_counter() - t0
            ok = all_succeeded(summary, wl)
        finally:
            ex.close()
            store.close()
    return RunResult(run_s, build_s, ok)


def max_rss_mib(who: int) -> float:
    return round(resource.getrusage(who).ru_maxrss / MIB, 1)


def bench_workload(wl: Workload, kind: str, workers: int, repeat: int) -> dict[str, Any]:
    """Warm-up, then *repeat* measured runs; the figures as one JSON-able dict."""
    warm = timed_run(wl, kind, workers)
    runs = [timed_run(wl, kind, workers) for _ in range(repeat)]
    times = [r.run_s for r in runs]
    median = statistics.median(times)
    return {
        "tool": "rota",
        "workload": wl.key,
        "n_tasks": wl.n_tasks,
        "executor": kind,
        "workers": workers if kind != "inprocess" else 1,
        "n_runs": repeat,
        "run_s": round(median, 4),
        "run_s_min": round(min(times), 4),
        "run_s_max": round(max(times), 4),
        "run_s_all": [round(t, 4) for t in times],
        "ms_per_task": round(median * 1000 / (wl.units or wl.n_tasks), 3),
        "build_s": round(statistics.median(r.build_s for r in runs), 4),
        "ok": warm.ok and all(r.ok for r in runs),
        "maxrss_self_mb": max_rss_mib(resource.RUSAGE_SELF),
        "maxrss_children_mb": max_rss_mib(resource.RUSAGE_CHILDREN),
        **(_beside_raw_dask(median, wl, workers, repeat) if kind == "dask" else {}),
    }


def _beside_raw_dask(rota_s: float, wl: Workload, workers: int, repeat: int) -> dict[str, Any]:
    """For W2 on Dask: raw Dask's time for the same no-ops, and Rota's time over it."""
    if wl.key != "W2":
        return {}
    raw = statistics.median(raw_dask(workers, wl.n_tasks, repeat))
    return {"raw_dask_s": round(raw, 4), "rota_over_raw_dask": round(rota_s / raw, 2)}


# --- the driver: one child process per workload --------------------------------------------------
def run_child(key: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run workload *key* in a fresh interpreter and return the JSON line it prints."""
    cmd = [sys.executable, __file__, "--single", key]
    cmd += ["--executor", args.executor, "--workers", str(args.workers)]
    cmd += ["--repeat", str(args.repeat)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"workload {key} printed nothing (exit status {proc.returncode})")
    return json.loads(lines[-1])


def wait_timed(cmd: Sequence[str], env: dict[str, str], out: Path) -> tuple[float, int, int]:
    """Run *cmd* to the end: (wall seconds, exit status, max RSS in KiB of it or a descendant)."""
    with out.open("w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, proc.returncode, usage.ru_maxrss


def cli_once(args: argparse.Namespace) -> tuple[float, bool, float]:
    """One ``rota run bench/run.py:w2 --json`` in a fresh ROTA_HOME: (wall s, ok, max RSS MiB)."""
    with tempfile.TemporaryDirectory(prefix="rota_bench_cli_") as tmp:
        env = {**os.environ, "ROTA_HOME": tmp}
        env.pop("ROTA_DATABASE_URL", None)
        cmd = [sys.executable, "-m", "rota", "run", f"{__file__}:w2", "--json"]
        cmd += ["--executor", args.executor, "--workers", str(args.workers)]
        out = Path(tmp) / "stdout.json"
        wall, code, rss = wait_timed(cmd, env, out)
        lines = out.read_text().strip().splitlines()
        report = json.loads(lines[-1]) if lines else {}
    tasks = report.get("tasks", {}).values()
    ok = code == 0 and report.get("state") == "success" and len(tasks) == N_FAN + 2
    ok = ok and all(t["state"] == "success" for t in tasks)
    return wall, ok, round(rss / MIB, 1)


def bench_cli(args: argparse.Namespace) -> dict[str, Any]:
    """Whole-process wall time of ``rota run`` on W2: a warm-up, then --repeat timed processes."""
    cli_once(args)
    runs = [cli_once(args) for _ in range(args.repeat)]
    walls = [w for w, _, _ in runs]
    return {
        "tool": "rota",
        "workload": "W2 via `rota run` (whole process)",
        "n_tasks": N_FAN + 2,
        "executor": args.executor,
        "workers": args.workers if args.executor != "inprocess" else 1,
        "n_runs": args.repeat,
        "wall_s": round(statistics.median(walls), 4),
        "wall_s_min": round(min(walls), 4),
        "wall_s_max": round(max(walls), 4),
        "ok": all(ok for _, ok, _ in runs),
        "maxrss_largest_process_mb": max(r for _, _, r in runs),
    }


# --- output --------------------------------------------------------------------------------------
HEADER = (
    f"{'workload':<9}{'tasks':>6}  {'executor':<12}{'n':>2}  {'in-run s median (min-max)':<27}"
    f"{'ms/task':>8}  {'MiB self':>8}{'children':>9}  ok"
)


def table_row(rec: dict[str, Any]) -> str:
    spread = f"{rec['run_s']:.3f} ({rec['run_s_min']:.3f}-{rec['run_s_max']:.3f})"
    ex = f"{rec['executor']}/{rec['workers']}"
    return (
        f"{rec['workload']:<9}{rec['n_tasks']:>6}  {ex:<12}{rec['n_runs']:>2}  {spread:<27}"
        f"{rec['ms_per_task']:>8.3f}  {rec['maxrss_self_mb']:>8.1f}"
        f"{rec['maxrss_children_mb']:>9.1f}  {rec['ok']}"
    )


def cli_row(rec: dict[str, Any]) -> str:
    spread = f"{rec['wall_s']:.3f} ({rec['wall_s_min']:.3f}-{rec['wall_s_max']:.3f})"
    return (
        f"{rec['workload']}, {rec['executor']}/{rec['workers']}, n={rec['n_runs']}: "
        f"wall {spread} s, largest process {rec['maxrss_largest_process_mb']:.1f} MiB, "
        f"ok={rec['ok']}"
    )


def print_table(records: list[dict[str, Any]], cli: dict[str, Any] | None) -> None:
    print(HEADER)
    print("-" * len(HEADER))
    for rec in records:
        print(table_row(rec))
    for rec in records:
        if "raw_dask_s" in rec:
            print(
                f"\n{rec['workload']} raw Dask on the same cluster (client.map of the same no-op + "
                f"gather): {rec['raw_dask_s']:.3f} s = "
                f"{rec['raw_dask_s'] * 1000 / rec['n_tasks']:.3f} ms/task; Rota on Dask takes "
                f"{rec['rota_over_raw_dask']:.2f}x raw Dask (design target: within 1.5x)"
            )
    if cli is not None:
        print()
        print(cli_row(cli))


# --- command line --------------------------------------------------------------------------------
def workload_list(text: str) -> list[str]:
    keys = [k.strip().upper() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in WORKLOADS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown workload {unknown[0]!r} ({', '.join(WORKLOADS)})"
        )
    return keys


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--executor", choices=EXECUTORS, default="local")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workload", type=workload_list, default=list(WORKLOADS))
    ap.add_argument("--repeat", type=int, default=3, help="measured runs after one warm-up")
    ap.add_argument("--json", action="store_true", help="one JSON line per workload")
    ap.add_argument("--cli", action="store_true", help="also time whole `rota run` W2 processes")
    ap.add_argument("--single", choices=list(WORKLOADS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.workers < 1 or args.repeat < 1:
        ap.error("--workers and --repeat must be >= 1")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.single:  # internal: one workload in this process, one JSON line on stdout
        rec = bench_workload(WORKLOADS[args.single], args.executor, args.workers, args.repeat)
        print(json.dumps(rec), flush=True)
        return 0 if rec["ok"] else 1
    records = [run_child(key, args) for key in args.workload]
    cli = bench_cli(args) if args.cli else None
    if args.json:
        for rec in [*records, *([cli] if cli else [])]:
            print(json.dumps(rec))
    else:
        print_table(records, cli)
    return 0 if all(r["ok"] for r in records) and (cli is None or cli["ok"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
