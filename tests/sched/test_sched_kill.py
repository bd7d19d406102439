"""Two ``rota scheduler`` processes on one PostgreSQL drive 20 runs of 50 short tasks (1,000 in
all). Midway, one of them and everything it started (drivers, workers) is SIGKILLed at once, as
when its machine goes away; it calls itself another host, so no pid check can tell the survivor
it is dead, only its heartbeats stopping. Every run finishes; the effect ledger the tasks keep
outside the store shows no task executed again after its committed success, no two attempts of
one task running at once, and no execution the store does not know of."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from schedhelp import rota_env, wait_for

from rota.engine.flowdir import FlowFolder
from rota.engine.lease import RunnerId
from rota.engine.runner import create_run
from rota.model.states import RunState, TaskState
from rota.store.base import NewTask, RunTiming
from rota.store.sql import SqlStore, open_store

pytestmark = pytest.mark.postgres
RUNS = 20
TASKS = 50
TIMEOUT_S = "8"  # the heartbeat timeout of both schedulers and their drivers
FLOW_SOURCE = Path(__file__).with_name("ledger_flow.py")


def _start_scheduler(env: dict[str, str], flows: Path, err: Path) -> subprocess.Popen[bytes]:
    with err.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "rota", "scheduler", "--flows", str(flows), "--tick", "0.5",
             "--max-active-runs", "3", "--workers-per-run", "2"],
            env=env, stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip


def _tagged(tag: str) -> list[int]:
    """Live processes whose environment carries *tag* (zombies are dead)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if tag.encode() not in (entry / "environ").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _signal_all(tag: str, sig: signal.Signals) -> int:
    """Send *sig* to every live process marked by *tag*; how many there were."""
    count = 0
    for pid in _tagged(tag):
        try:
            os.kill(pid, sig)
            count += 1
        except ProcessLookupError:
            pass
    return count


def _queue_runs(store: SqlStore, flows: Path) -> list[str]:
    scan = FlowFolder(flows, parse_timeout=60).scan()
    assert "ledger" in scan.flows, scan.errors
    info = scan.flows["ledger"]
    tasks = [NewTask(tid, kind, code) for tid, kind, code in info.tasks or ()]
    assert len(tasks) == TASKS
    now = datetime.now(UTC)
    store.upsert_flow(info.name, info.path, info.code_hash, now)
    made = []
    for i in range(RUNS):
        when = now + timedelta(seconds=i)  # a run is unique per (flow, logical date)
        timing = RunTiming(when, when, when, "triggered")
        made.append(create_run(store, info.ref(), tasks, {}, now, timing=timing).run_id)
    return made


def _done(store: SqlStore, run_ids: list[str]) -> int:
    return sum(a.state is TaskState.SUCCESS for r in run_ids for a in store.attempts(r))


def _driven_by(store: SqlStore, run_ids: list[str], host: str) -> list[str]:
    """Runs being driven (running, with a started task) by a driver on *host*."""
    out = []
    for run in (store.get_run(r) for r in run_ids):
        owner = RunnerId.parse(run.owner) if run.owner else None
        if owner is None or owner.host != host or run.state is not RunState.RUNNING:
            continue
        if any(a.state is TaskState.RUNNING for a in store.attempts(run.run_id)):
            out.append(run.run_id)
    return out


def _freeze_midway(store: SqlStore, run_ids: list[str], tag: str) -> list[str]:
    """SIGSTOP every process of node-b once a good part is done, at a moment it drives a run with
    a task running; the runs it drives then. When that moment passed before the stop (its tasks
    are short), node-b goes on (SIGCONT) and the next such moment is taken."""
    for _ in range(50):
        wait_for(
            lambda: _done(store, run_ids) >= 300 and bool(_driven_by(store, run_ids, "node-b")),
            240, every=0.05,
        )  # fmt: skip
        stopped = _signal_all(tag, signal.SIGSTOP)
        cut = _driven_by(store, run_ids, "node-b")
        if cut and stopped >= 3:  # its scheduler, a driver, its workers
            return cut
        _signal_all(tag, signal.SIGCONT)
    raise AssertionError("node-b was never caught driving a run with a task running")


def test_two_schedulers_1000_tasks_one_killed_with_its_host_midway(
    postgres_url: str, tmp_path: Path
) -> None:
    flows, ledger = tmp_path / "flows", tmp_path / "ledger" / "effects.tsv"
    flows.mkdir()
    ledger.parent.mkdir()
    (flows / "ledger_flow.py").write_text(FLOW_SOURCE.read_text())
    common = {"ROTA_DATABASE_URL": postgres_url, "ROTA_TEST_LEDGER": str(ledger),
              "ROTA_HEARTBEAT_TIMEOUT": TIMEOUT_S}  # fmt: skip
    marker = f"node-b-{uuid.uuid4().hex}"  # in the environment of every process of node-b
    tag = f"ROTA_TEST_HOST={marker}"
    env_a = rota_env(tmp_path / "home-a", **common)
    env_b = rota_env(tmp_path / "home-b", **common, ROTA_HOSTNAME="node-b", ROTA_TEST_HOST=marker)
    with open_store(postgres_url) as store:
        run_ids = _queue_runs(store, flows)
        a = _start_scheduler(env_a, flows, tmp_path / "a.err")
        b = _start_scheduler(env_b, flows, tmp_path / "b.err")
        try:
            # node-b's machine goes: every process of it stops at once (none sees another die),
            # then all are killed; no lifeline, no cleanup, nothing written after the freeze
            cut = _freeze_midway(store, run_ids, tag)
            killed_at = time.monotonic()
            while _signal_all(tag, signal.SIGKILL):
                time.sleep(0.1)
            assert b.wait(10) == -signal.SIGKILL
            wait_for(lambda: all(store.get_run(r).state is RunState.SUCCESS for r in cut), 240)
            taken_over = time.monotonic() - killed_at
            wait_for(lambda: all(store.get_run(r).state is RunState.SUCCESS for r in run_ids), 300)
            assert a.poll() is None, "the surviving scheduler kept running"
        finally:
            for proc in (a, b):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)
        runs = {r: store.get_run(r) for r in run_ids}
        attempts = {r: store.attempts(r) for r in run_ids}
    print(
        f"\nnode-b's runs finished {taken_over:.1f}s after its machine went (timeout {TIMEOUT_S}s)"
    )
    assert all(run.state is RunState.SUCCESS and run.owner is None for run in runs.values())
    _check_store(attempts, cut)
    _check_ledger(ledger.read_text().splitlines(), attempts)


def _check_store(attempts: dict[str, list], cut: list[str]) -> None:
    """One success per task, the latest try; what the dead drivers left running, interrupted."""
    for recs in attempts.values():
        tries: dict[str, list] = {}
        for rec in recs:
            tries.setdefault(rec.task_id, []).append(rec)
        assert len(tries) == TASKS
        for per_task in tries.values():
            per_task.sort(key=lambda rec: rec.try_number)
            assert [r.state for r in per_task].count(TaskState.SUCCESS) == 1
            assert per_task[-1].state is TaskState.SUCCESS
            assert all(r.state is TaskState.INTERRUPTED for r in per_task[:-1])
    interrupted = [a for r in cut for a in attempts[r] if a.state is TaskState.INTERRUPTED]
    assert interrupted, "the killed runs' running attempts were marked interrupted and retried"
    assert sum(len(recs) for recs in attempts.values()) >= RUNS * TASKS


def _check_ledger(lines: list[str], attempts: dict[str, list]) -> None:
    """No overlap; every execution is of a stored attempt; none after the task's success was
    committed (by try number and by time); the success's own attempt among them."""
    rows = [line.split("\t") for line in lines]
    assert not [r for r in rows if r[0] == "overlap"], "two attempts of one task ran at once"
    starts = [(r[1], r[2], int(r[3]), float(r[5])) for r in rows if r[0] == "start"]
    known = {(a.run_id, a.task_id, a.try_number): a for recs in attempts.values() for a in recs}
    success = {(a.run_id, a.task_id): a for a in known.values() if a.state is TaskState.SUCCESS}
    assert all((run, tid, n) in known for run, tid, n, _ in starts), "an unknown execution"
    for run, tid, n, at in starts:
        won = success[(run, tid)]
        assert n <= won.try_number, f"{run} {tid} executed again after its success"
        assert won.committed_at is not None and at <= won.committed_at.timestamp()
    executed = Counter((run, tid, n) for run, tid, n, _ in starts)
    assert all(executed[(a.run_id, a.task_id, a.try_number)] for a in success.values())
    # a dispatch the dead driver had not committed yet is run again under the same try number
    again = sum(count - 1 for count in executed.values())
    print(f"{len(starts)} executions; {again} of attempts whose dispatch was never committed")
