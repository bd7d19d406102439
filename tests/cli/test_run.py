"""``rota run`` end to end, in a subprocess against a temporary ROTA_HOME."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from clihelp import REPO, RotaCli

ML_EXAMPLE = str(REPO / "examples" / "ml_pipeline.py")
ML_TASKS = [
    "extract", "clean", "features", "train", "evaluate", "deploy_or_notify", "deploy", "notify"
]  # fmt: skip


def test_ml_example_succeeds_and_runs_show_prints_the_same(rota: RotaCli, home: Path) -> None:
    result = rota("run", ML_EXAMPLE, "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["state"] == "success"
    assert summary["flow"] == "ml_pipeline"
    assert list(summary["tasks"]) == ML_TASKS
    for tid, task in summary["tasks"].items():
        if tid == "notify":  # the branch chose deploy: Airflow's BranchPythonOperator skips it
            assert task["state"] == "skipped" and task["attempts"] == 0
            assert task["reason"] == (
                "not chosen by branch task 'deploy_or_notify' (it chose 'deploy')"
            )
            continue
        assert task["state"] == "success"
        assert task["attempts"] == 1
        assert task["duration_s"] >= 0
    shown = rota("runs", "show", summary["run_id"], "--json")
    assert shown.code == 0, shown.err
    assert shown.json() == summary
    models = list((home / "models" / "digits").iterdir())
    assert [m.name for m in models] == [summary["run_id"]]
    metrics = json.loads((models[0] / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.9


def test_ml_example_below_threshold_does_not_deploy(rota: RotaCli, home: Path) -> None:
    result = rota("run", ML_EXAMPLE, "-p", "threshold=1.01", "-p", "epochs=2")
    assert result.code == 0, result.err
    assert "'deployed': False" in result.out  # notify's output, the leaf that ran
    assert not (home / "models").exists()
    (run,) = rota("runs", "list", "--json").json()
    shown = rota("runs", "show", run["run_id"], "--json")
    states = {tid: t["state"] for tid, t in shown.json()["tasks"].items()}
    assert states["deploy"] == "skipped" and states["notify"] == "success"
    assert shown.json()["state"] == "success"  # its leaves succeeded or were skipped


def _count_runs(home: Path) -> int:
    with sqlite3.connect(home / "rota.db") as db:
        return int(db.execute("select count(*) from runs").fetchone()[0])


CYCLE = """
from rota import Flow, PythonTask

def f():
    return 1

with Flow("cyclic") as cyclic:
    a = PythonTask("a", f)
    b = PythonTask("b", f)
    c = PythonTask("c", f)
    a >> b >> c >> a
"""


def test_cycle_exits_2_names_the_cycle_and_writes_nothing(
    rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("cyclic.py", CYCLE)
    result = rota("run", str(path))
    assert result.code == 2
    assert "a -> b -> c -> a" in result.err
    assert str(path) in result.err
    assert "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (home / "rota.db").exists()
    # with a store that already has a run, still nothing is added
    good = write_flow(
        "good.py",
        "from rota import flow, task\n@task\ndef one():\n    return 1\n"
        "@flow\ndef good():\n    one()\n",
    )
    assert rota("run", str(good)).code == 0
    assert _count_runs(home) == 1
    assert rota("run", str(path)).code == 2
    assert _count_runs(home) == 1


SHELL_FAIL = """
from rota import Flow, ShellTask

with Flow("shellfail") as shellfail:
    bad = ShellTask("bad", "echo to-stdout; echo boom-on-stderr >&2; exit 3")
    after = ShellTask("after", "echo never")
    bad >> after
"""


def test_shell_exit_3_fails_the_run_and_its_log_holds_stderr(
    rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("shellfail.py", SHELL_FAIL)
    result = rota("run", str(path), "--json")
    assert result.code == 1
    summary = result.json()
    assert summary["state"] == "failed"
    assert summary["tasks"]["bad"]["state"] == "failed"
    assert summary["tasks"]["after"]["state"] == "upstream_failed"
    logs = rota("tasks", "logs", summary["run_id"], "bad")
    assert logs.code == 0
    assert "boom-on-stderr" in logs.out
    assert "to-stdout" in logs.out
    assert "exited with code 3" in logs.out
    shown = rota("runs", "show", summary["run_id"])
    assert "exited with code 3" in shown.out


PARALLEL = """
import os, time, json
from pathlib import Path
from rota import flow, task

LEDGER = Path(os.environ["LEDGER"])

@task
def sleeper(name: str) -> None:
    start = time.time()
    time.sleep(1.0)
    with LEDGER.open("a") as fh:
        fh.write(json.dumps({"name": name, "pid": os.getpid(), "ppid": os.getppid(),
                             "start": start, "end": time.time()}) + "\\n")

@flow
def parallel():
    sleeper("a")
    sleeper("b")
"""


def test_local_executor_runs_tasks_in_parallel_in_worker_processes(
    home: Path, tmp_path: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("parallel.py", PARALLEL)
    ledger = tmp_path / "ledger.jsonl"
    env = {**os.environ, "ROTA_HOME": str(home), "LEDGER": str(ledger)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rota", "run", str(path), "--executor", "local", "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rows = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert sorted(r["name"] for r in rows) == ["a", "b"]
    a, b = rows
    assert a["start"] < b["end"] and b["start"] < a["end"], "the two sleeps did not overlap"
    for r in rows:
        assert r["pid"] != proc.pid, "a task ran in the CLI's own process"
        assert r["ppid"] == proc.pid, "a task ran in a process the CLI did not start"
    assert a["pid"] != b["pid"]


def test_threads_and_inprocess_executors_run_the_same_flow(
    rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    src = """
    from rota import flow, task

    @task
    def a() -> int:
        return 20

    @task
    def b(x: int) -> int:
        return x + 1

    @task
    def c(xs: list[int]) -> int:
        print("sum", sum(xs))
        return sum(xs)

    @flow
    def fan():
        x = a()
        c([b(x) for _ in range(5)])
    """
    path = write_flow("fan.py", src)
    for executor in ("threads", "inprocess", "local"):
        result = rota("run", str(path), "--executor", executor, "--json")
        assert result.code == 0, (executor, result.err)
        summary = result.json()
        assert set(summary["tasks"]) == {"a", "b", "b__1", "b__2", "b__3", "b__4", "c"}
        logs = rota("tasks", "logs", summary["run_id"], "c")
        assert logs.out.strip() == "sum 105", executor


SLOW = """
import os
import time
from pathlib import Path
from rota import flow, task

@task
def nap(i: int) -> int:
    gate = Path(os.environ.get("GATE", "/nonexistent"))
    if i >= 2 and "GATE" in os.environ:  # the later tasks wait for the test to open the gate
        while not gate.exists():
            time.sleep(0.05)
    else:
        time.sleep(0.5)
    return i

@flow
def slow():
    for i in range(8):
        nap(i)
"""


def test_sigterm_interrupts_the_run_and_marks_attempts_interrupted(
    home: Path, rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("slow.py", SLOW)
    env = {**os.environ, "ROTA_HOME": str(home), "GATE": str(home.parent / "gate-never-opened")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rota", "run", str(path), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # wait until the first two tasks are done (the others wait on a gate), then stop the runner
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = rota("runs", "list", "--json").json() if (home / "rota.db").exists() else []
        if runs:
            tasks = rota("runs", "show", runs[0]["run_id"], "--json").json()["tasks"]
            if sum(t["state"] == "success" for t in tasks.values()) >= 2:
                break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    summary = rota("runs", "show", runs[0]["run_id"], "--json").json()
    assert summary["state"] == "interrupted"
    states = [t["state"] for t in summary["tasks"].values()]
    assert "interrupted" in states
    assert set(states) <= {"success", "interrupted", "scheduled"}
