"""``rota run --executor dask`` on a real cluster (``dask scheduler`` + ``dask worker`` processes on
127.0.0.1): the ML example unchanged, on a shared folder and on S3; logs; a worker killed mid-task;
the one-line refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from clihelp import RotaCli

from fixtures_dask import DaskCluster, dask_cluster, start_cluster  # noqa: F401
from fixtures_s3 import s3_bucket, s3_server  # noqa: F401
from rota.model.states import RunState, TaskState
from rota.store.sql import SqlStore, open_store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ml_pipeline.py"
ML_TASKS = {
    "extract", "clean", "features", "train", "evaluate", "deploy_or_notify", "deploy", "notify"
}  # fmt: skip


def _json(stdout: str) -> dict[str, object]:
    return dict(json.loads(stdout.strip().splitlines()[-1]))


def _run_ml(rota: RotaCli, cluster: DaskCluster, *extra: str, env: dict[str, str]) -> str:
    res = rota(
        "run", str(EXAMPLE), "--executor", "dask", "--dask-address", cluster.address,
        "-p", "epochs=3", "--json", *extra, env=env, timeout=300,
    )  # fmt: skip
    assert res.code == 0, res.err
    report = _json(res.out)
    assert report["state"] == "success"
    tasks = report["tasks"]
    assert isinstance(tasks, dict) and set(tasks) == ML_TASKS
    states = {tid: t["state"] for tid, t in tasks.items()}
    chosen = "deploy" if states["notify"] == "skipped" else "notify"  # the branch's choice
    assert states.pop({"deploy": "notify", "notify": "deploy"}[chosen]) == "skipped", states
    assert set(states.values()) == {"success"}, states
    return str(report["run_id"])


def test_the_ml_example_runs_on_the_cluster_with_a_shared_folder(
    rota: RotaCli,
    dask_cluster: DaskCluster,  # noqa: F811
    tmp_path: Path,
    store: SqlStore,
) -> None:
    shared = tmp_path / "shared-artifacts"
    run_id = _run_ml(rota, dask_cluster, "--artifacts", str(shared), env={})
    # every output is in the shared folder the workers wrote (a small one in its row), not the home
    outputs = {a.task_id: a.output_path for a in store.attempts(run_id) if a.output_path}
    assert {"extract", "train", "deploy"} <= set(outputs)  # notify, not chosen, made none
    elsewhere = {
        t: p for t, p in outputs.items() if not str(p).startswith((str(shared), "inline:"))
    }
    assert not elsewhere
    assert any(str(p).startswith(str(shared)) for p in outputs.values())
    assert not (tmp_path / "rota-home" / "artifacts" / run_id).exists()
    # the attempts ran in the workers' processes, not here: their pids are not the engine's
    workers = {a.worker for a in store.attempts(run_id) if a.state is not TaskState.SKIPPED}
    assert all(w and not w.startswith("engine:") for w in workers)
    # the example's deploy step wrote its model where the workers' HOME is
    assert (dask_cluster.home / ".rota" / "models" / "digits" / run_id / "model.pkl").exists()
    # what a task printed on a worker is in its log, as rota tasks logs shows it
    logs = rota("tasks", "logs", run_id, "extract")
    assert logs.code == 0, logs.err
    assert "extracted 1797 images of 64 pixels" in logs.out
    trained = rota("tasks", "logs", run_id, "train")
    assert "epoch 3/3: training accuracy" in trained.out


def test_the_ml_example_runs_on_the_cluster_with_artifacts_on_s3(
    rota: RotaCli,
    dask_cluster: DaskCluster,  # noqa: F811
    s3_bucket: str,  # noqa: F811
    store: SqlStore,
) -> None:
    url = f"{s3_bucket}/artifacts"
    run_id = _run_ml(rota, dask_cluster, env={"ROTA_ARTIFACTS": url})
    paths = [a.output_path for a in store.attempts(run_id) if a.state is not TaskState.SKIPPED]
    places = (f"{url}/{run_id}/", f"inline:{run_id}/")  # a small output is kept in its row
    assert paths and all(str(p).startswith(places) for p in paths), paths
    assert any(str(p).startswith(places[0]) for p in paths), paths
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=os.environ["ROTA_S3_ENDPOINT_URL"])
    assert fs.exists(f"{url}/.checkpoints/{run_id}/train")  # the checkpoint lives there too
    assert fs.exists(f"{url}/.claims/{run_id}")  # and each attempt's claim


def test_a_remote_scheduler_with_the_home_artifacts_is_refused_in_one_line(
    rota: RotaCli, home: Path
) -> None:
    res = rota("run", str(EXAMPLE), "--executor", "dask", "--dask-address", "tcp://10.0.0.9:8786")
    assert res.code == 2
    assert res.err.count("\n") == 1 and "Traceback" not in res.err
    assert "--artifacts" in res.err and "cannot read this machine's folder" in res.err
    assert not (home / "rota.db").exists(), "something was stored"


def test_a_bad_dask_address_is_one_line(rota: RotaCli, home: Path) -> None:
    res = rota("run", str(EXAMPLE), "--executor", "dask", env={"ROTA_DASK_ADDRESS": "no port"})
    assert res.code == 2 and res.err.count("\n") == 1, res.err
    assert "tcp://HOST:PORT" in res.err
    assert not (home / "rota.db").exists()


def test_no_scheduler_at_the_address_is_one_line(rota: RotaCli, tmp_path: Path) -> None:
    with_dead = ("--dask-address", "tcp://127.0.0.1:9", "--artifacts", str(tmp_path / "a"))
    res = rota("run", str(EXAMPLE), "--executor", "dask", *with_dead)  # after 10 s of trying
    assert res.code == 2 and res.err.count("\n") == 1, res.err
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in res.err


KILLED_FLOW = """
import os, time
from pathlib import Path
from rota import flow, task

LEDGER = Path(os.environ["TEST_LEDGER"])
GATE = Path(os.environ["TEST_GATE"])

@task
def first() -> int:
    return 1

@task(retries=2)
def steps(x: int, ctx) -> int:
    state = ctx.checkpoint.load()
    done = state["step"] if state else 0
    with LEDGER.open("a") as fh:
        fh.write(f"{ctx.try_number} {done} {os.getpid()}\\n")
    if done == 0:
        ctx.checkpoint.save({"step": 5})
    while not GATE.exists():
        time.sleep(0.05)
    return done + x

@flow
def killed():
    steps(first())
"""


def _wait_lines(path: Path, n: int, timeout: float = 120) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{path} has fewer than {n} lines")


def test_a_worker_killed_mid_task_is_retried_as_a_new_attempt_from_its_checkpoint(
    write_flow: Callable[[str, str], Path], home: Path, tmp_path: Path
) -> None:
    """SIGKILL the Dask worker running a task: the run succeeds, the store has the killed attempt
    (failed, WorkerLost) and a later one that resumed from the checkpoint on the other worker,
    and the effect ledger has no execution the store does not know of."""
    path = write_flow("killed.py", KILLED_FLOW)
    ledger, gate = tmp_path / "ledger", tmp_path / "gate"
    paths = {"TEST_LEDGER": str(ledger), "TEST_GATE": str(gate)}  # tasks run with the workers' env
    with start_cluster(nanny=False, env=paths) as cluster:  # no nanny: the killed one stays dead
        env = {**os.environ, "ROTA_HOME": str(home), **paths}
        env.pop("ROTA_DATABASE_URL", None)
        cmd = [sys.executable, "-m", "rota", "run", str(path), "--executor", "dask"]
        cmd += ["--dask-address", cluster.address, "--artifacts", str(tmp_path / "shared")]
        proc = subprocess.Popen(cmd + ["--json"], env=env, stdout=subprocess.PIPE, text=True)  # noqa: RUF005
        try:
            _wait_lines(ledger, 1)
            busy = [a for a, keys in cluster.processing().items() if keys]
            assert len(busy) == 1, cluster.processing()
            victim = cluster.worker_pids()[busy[0]]
            os.kill(victim, signal.SIGKILL)
            gate.touch()
            out, _ = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        survivors = cluster.worker_pids()
    assert proc.returncode == 0, out
    assert victim not in survivors.values() and len(survivors) == 1
    run_id = _json(out)["run_id"]
    with open_store(f"sqlite:///{home}/rota.db") as store:
        run = store.get_run(str(run_id))
        tries = sorted(
            (a for a in store.attempts(str(run_id)) if a.task_id == "steps"),
            key=lambda a: a.try_number,
        )
    assert run.state is RunState.SUCCESS
    killed, *_, last = tries
    assert killed.state in (TaskState.UP_FOR_RETRY, TaskState.INTERRUPTED)
    assert killed.error_type == "WorkerLost", killed.error_message
    assert last.state is TaskState.SUCCESS and last.try_number > killed.try_number
    # the ledger: one line per execution; each is an attempt the store has, none ran twice
    executions = [line.split() for line in ledger.read_text().splitlines()]
    ran = [int(t) for t, _, _ in executions]
    assert len(ran) == len(set(ran)), f"an attempt ran twice: {executions}"
    assert set(ran) <= {a.try_number for a in tries if a.started_at is not None}
    assert ran[0] == killed.try_number and ran[-1] == last.try_number
    # the later attempt resumed from the checkpoint the killed one saved
    assert executions[-1][1] == "5"


HELLO = """
from rota import flow, task

@task
def hello() -> str:
    print("hello from a worker")
    return "hi"

@flow
def greet():
    hello()
"""


def test_without_an_address_a_local_cluster_runs_the_flow(
    rota: RotaCli, write_flow: Callable[[str, str], Path], store: SqlStore
) -> None:
    path = write_flow("hello.py", HELLO)
    res = rota("run", str(path), "--executor", "dask", "--workers", "1", "--json", timeout=300)
    assert res.code == 0, res.err
    run_id = str(_json(res.out)["run_id"])
    (attempt,) = store.attempts(run_id)
    assert attempt.state is TaskState.SUCCESS
    assert not str(attempt.worker).endswith(f":{os.getpid()}")
    assert Path(str(attempt.log_path)).read_text() == "hello from a worker\n"
