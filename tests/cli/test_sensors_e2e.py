"""Sensors inside real runs: a reschedule sensor frees its worker between pokes and times out
from its persisted first poke across a scheduler restart; a KeySensor waits for an S3 key."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from clihelp import RotaCli, rota_env, wait_for

from fixtures_s3 import s3_bucket, s3_server  # noqa: F401
from rota.model.states import RunState, TaskState
from rota.store.base import AttemptRecord
from rota.store.sql import SqlStore

WriteFlow = Callable[[str, str], Path]

WAITING = """
import time
from pathlib import Path
from rota import FileSensor, Flow, PythonTask

OUT = Path(__file__).parent.parent / "spans"

def busy(n: int) -> None:
    OUT.mkdir(exist_ok=True)
    start = time.time()
    time.sleep(1.0)
    (OUT / f"busy{n}").write_text(f"{start} {time.time()}")

with Flow("waits") as f:
    wait = FileSensor("wait", path=str(Path(__file__).parent / "never-{{ ds }}"),
                      poke_interval=5, timeout=60, mode="reschedule", soft_fail=True)
    after = PythonTask("after", lambda: None)
    wait >> after
    for n in range(12):
        PythonTask(f"busy{n}", busy, args=(n,))
"""


def _daemon(home: Path, flows: Path) -> subprocess.Popen[str]:
    env = rota_env(home, ROTA_WORKERS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "rota", "scheduler", "--flows", str(flows), "--tick", "0.5"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_reschedule_sensor_frees_its_slot_and_times_out_from_its_first_poke_across_restarts(
    rota: RotaCli, home: Path, write_flow: WriteFlow, tmp_path: Path, store: SqlStore
) -> None:
    path = write_flow("waits.py", WAITING)
    queued = rota("trigger", f"{path}:waits")
    assert queued.code == 0, queued.err
    daemon = _daemon(home, path.parent)
    (run,) = store.list_runs("waits")

    def sensor_attempts() -> list[AttemptRecord]:
        return [a for a in store.attempts(run.run_id) if a.task_id == "wait"]

    try:
        wait_for(lambda: any(a.pokes >= 2 for a in sensor_attempts()), 40)
        daemon.send_signal(signal.SIGKILL)  # the scheduler dies mid-wait
        daemon.communicate(timeout=10)
        wait_for(lambda: store.get_run(run.run_id).state is RunState.INTERRUPTED, 30)
        time.sleep(2)
        daemon = _daemon(home, path.parent)  # a new scheduler resumes the run
        wait_for(lambda: store.get_run(run.run_id).state is RunState.SUCCESS, 90)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)
    attempts = sensor_attempts()
    final = max(attempts, key=lambda a: a.try_number)
    assert len(attempts) >= 2, "the restart interrupted the sensor's attempt and resumed it"
    first = min(a.first_poke_at for a in attempts if a.first_poke_at is not None)
    assert all(a.first_poke_at in (None, first) for a in attempts), "first poke kept"
    assert final.state is TaskState.SKIPPED, "soft_fail: a timed-out sensor is skipped"
    assert final.finished_at is not None
    waited = (final.finished_at - first).total_seconds()
    assert waited >= 55, f"timed out {waited:.1f}s after the first poke, before its time"
    # one worker only, yet the busy tasks ran while the sensor was waiting between pokes
    spans = [tuple(map(float, p.read_text().split())) for p in (tmp_path / "spans").glob("busy*")]
    assert len(spans) == 12
    during = [s for s in spans if first.timestamp() < s[0] < final.finished_at.timestamp()]
    assert len(during) >= 6, "the sensor's worker slot ran other tasks between its pokes"
    after = [a for a in store.attempts(run.run_id) if a.task_id == "after"]
    assert after[-1].state is TaskState.SKIPPED


KEYED = """
from rota import KeySensor, Flow, PythonTask

with Flow("keyed") as f:
    wait = KeySensor("wait", url="{bucket}/landing/{{{{ ds }}}}/done", poke_interval=0.5,
                     timeout=60, mode="reschedule")
    load = PythonTask("load", lambda: "loaded")
    wait >> load
"""


def test_a_key_sensor_waits_for_an_s3_key_then_the_downstream_runs(
    rota: RotaCli,
    write_flow: WriteFlow,
    s3_server: str,  # noqa: F811
    s3_bucket: str,  # noqa: F811
    store: SqlStore,
) -> None:
    import s3fs

    path = write_flow("keyed.py", KEYED.format(bucket=s3_bucket))
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    fs = s3fs.S3FileSystem(endpoint_url=s3_server)
    written: list[datetime] = []

    def poked() -> bool:
        runs = store.list_runs("keyed")
        return bool(runs) and any(
            a.task_id == "wait" and a.pokes >= 1 for a in store.attempts(runs[0].run_id)
        )

    def drop_key_after_a_poke() -> None:  # the key appears only once the sensor has looked
        wait_for(poked, 60)
        written.append(datetime.now(UTC))
        fs.pipe(f"{s3_bucket}/landing/{day}/done", b"ok")

    dropper = threading.Thread(target=drop_key_after_a_poke, daemon=True)
    dropper.start()
    result = rota("run", str(path), "--json")
    dropper.join(timeout=60)
    assert result.code == 0, result.err
    assert written, "the run ended before the key was written"
    tasks = result.json()["tasks"]
    assert tasks["wait"]["state"] == "success" and tasks["load"]["state"] == "success"
    assert tasks["wait"]["attempts"] == 1, "pokes are not attempts"
    (attempt,) = [a for a in store.attempts(result.json()["run_id"]) if a.task_id == "wait"]
    assert attempt.started_at is not None and attempt.finished_at is not None
    # the one attempt spans the whole wait: it began before the key existed and ended after
    assert attempt.started_at < written[0] < attempt.finished_at
    log = rota("tasks", "logs", result.json()["run_id"], "wait")
    assert log.code == 0, log.err
    pokes = [ln for ln in log.out.splitlines() if "[rota] poke" in ln]
    assert len(pokes) >= 2 and "poke 1:" in pokes[0] and "satisfied" in pokes[-1], log.out
    assert "satisfied" not in pokes[0], log.out
