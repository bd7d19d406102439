"""The peers, run beside Rota in the same invocation (``make bench-peers``; see bench/README.md).

The peer scripts are run where they are, in the peers folder outside this repository
(``--peers-dir``; the Makefile's ``PEERS_DIR``), each with the Python of its own virtualenv
under ``--peer-venvs`` (``PEER_VENVS``, outside the repository), which is created with
``python3 -m venv`` and ``pip install`` the first time it is needed. W1-W3 come from the
shared scripts; the fan-out (F2K) from ``bench/peers_fanout/``, written for this suite.

Each peer command is one whole process: its wall time is taken from the outside (interpreter
start to exit, as for ``rota run``) and its in-run time is the ``run_s`` of the JSON line it
prints (perf_counter around the tool's own run call).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure import BENCH, MIB, wait_timed

TOOLS: dict[str, tuple[str, ...]] = {
    "luigi": ("luigi",),
    "prefect": ("prefect>=3,<4",),
    "dagster": ("dagster",),
    "airflow": ("apache-airflow==3.3.2",),
}


@dataclass(frozen=True)
class PeerJob:
    tool: str
    workload: str
    script: Path
    args: tuple[str, ...]
    n_tasks: int
    mode: str


def jobs(tool: str, peers_dir: Path, keys: Sequence[str], state: Path) -> list[PeerJob]:
    """What to run of *tool* for the suite's workloads *keys* (the ones the peer has)."""
    sizes = {"W1": 200, "W2": 1002, "W3": 6}
    out = []
    for key in keys:
        if key in sizes:
            args: tuple[str, ...] = (key.lower(), "--state-dir", str(state / tool))
            if tool == "dagster":
                args += ("--mode", "inprocess")
            out.append(
                PeerJob(tool, key, peers_dir / f"{tool}_bench.py", args, sizes[key], _mode(tool))
            )
        if key == "F2K" and tool == "luigi":
            script = BENCH / "peers_fanout" / "luigi_fanout.py"
            args = ("--n", "2000", "--workers", "1", "--state-dir", str(state / tool))
            out.append(PeerJob(tool, key, script, args, 2002, _mode(tool)))
    return out


def _mode(tool: str) -> str:
    return {
        "luigi": "local scheduler, workers=1",
        "prefect": "default task runner, temporary server",
        "dagster": "execute_in_process",
        "airflow": "dag.test()",
    }[tool]


def ensure_venv(tool: str, venvs: Path) -> Path | None:
    """The Python of *tool*'s virtualenv, created and installed the first time; None on failure."""
    py = venvs / tool / "bin" / "python"
    marker = venvs / tool / ".rota-bench-installed"
    if marker.exists():
        return py
    print(f"# creating the {tool} virtualenv in {venvs / tool} (first use)", file=sys.stderr)
    venvs.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(["python3", "-m", "venv", str(venvs / tool)], check=False)
    pip = [str(py), "-m", "pip", "install", "-q", *TOOLS[tool]]
    if made.returncode != 0 or subprocess.run(pip, check=False).returncode != 0:
        print(f"# {tool}: the virtualenv could not be made; skipped", file=sys.stderr)
        return None
    marker.touch()
    return py


def run_job(py: Path, job: PeerJob, repeat: int) -> dict[str, Any]:
    """A warm-up process, then *repeat* timed ones of *job*: whole-process and in-run figures."""
    walls: list[float] = []
    inrun: list[float] = []
    rss: list[float] = []
    cpu: list[float] = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="rota_bench_peer_") as tmp:
        for i in range(repeat + 1):
            timed = wait_timed(
                [str(py), str(job.script), *job.args],
                _env(),
                Path(tmp) / "out",
                cwd=job.script.parent,
            )
            line = _last_json(Path(tmp) / "out")
            ok = ok and timed.code == 0 and bool(line.get("ok"))
            if i:
                walls.append(timed.wall_s)
                inrun.append(float(line.get("run_s", "nan")))
                rss.append(timed.maxrss_kib / MIB)
                cpu.append(timed.cpu_s)
    base = {
        "tool": job.tool,
        "mode": job.mode,
        "workload": job.workload,
        "n_tasks": job.n_tasks,
        "units": job.n_tasks,
        "n_runs": repeat,
        "ok": ok,
        "rss_largest_mib": round(max(rss), 1),
    }
    whole, run = statistics.median(walls), statistics.median(inrun)
    return {
        **base,
        "whole_s": round(whole, 4),
        "whole_ms_per_task": round(whole * 1000 / job.n_tasks, 4),
        "s": round(run, 4),
        "ms_per_task": round(run * 1000 / job.n_tasks, 4),
        "cpu_ms_per_task": round(statistics.median(cpu) * 1000 / job.n_tasks, 4),
    }


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("ROTA_", "VIRTUAL_ENV"))}


def _last_json(path: Path) -> dict[str, Any]:
    for line in reversed(path.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                rec: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            return rec
    return {}


def run_peers(
    tools: Sequence[str], peers_dir: Path, venvs: Path, keys: Sequence[str], repeat: int
) -> list[dict[str, Any]]:
    """Every job of every tool in *tools* that can run here; a note record for those that can't."""
    out: list[dict[str, Any]] = []
    peers_dir = peers_dir.resolve()  # each script runs in its own folder: a relative path breaks
    state = Path(tempfile.mkdtemp(prefix="rota_bench_peers_"))
    try:
        for tool in tools:
            todo = jobs(tool, peers_dir, keys, state)
            if not todo:
                continue
            if any(not j.script.exists() for j in todo):
                out.append({"tool": tool, "skipped": "no peer scripts in --peers-dir"})
                continue
            py = ensure_venv(tool, venvs)
            if py is None:
                out.append({"tool": tool, "skipped": "its virtualenv could not be installed"})
                continue
            if tool == "airflow":
                subprocess.run(
                    [
                        str(py),
                        str(peers_dir / "airflow_bench.py"),
                        "setup",
                        "--state-dir",
                        str(state / tool),
                    ],
                    check=False,
                    capture_output=True,
                )
            for job in todo:
                out.append(run_job(py, job, repeat))
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return out
