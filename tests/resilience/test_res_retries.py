"""Retries end to end: attempt counts, the back-off schedule measured from the store, retry_on /
give_up_on, flow-level defaults, timeouts as retryable failures, and a runner SIGKILLed in the
middle of a back-off wait (the CLI, then ``rota resume``)."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reshelp import attempts_of, cli_env, reap, rota_cmd, run_cli, store_at, wait_for

from rota import Flow, PythonTask, RetryPolicy, flow, task
from rota.engine.report import RunSummary
from rota.engine.runner import FlowRef, Runner, RunnerOptions
from rota.errors import TaskTimeout
from rota.executors.base import Executor
from rota.executors.pool import LocalPoolExecutor
from rota.executors.threads import InProcessExecutor
from rota.model.dag import Dag
from rota.model.schedule import SystemClock
from rota.model.states import RunState, TaskState
from rota.store.base import AttemptRecord, Store
from rota.store.sql import open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/rota.db")
    yield s
    s.close()


def make_executor(kind: str, tmp_path: Path) -> Executor:
    if kind == "local":
        return LocalPoolExecutor(2, str(tmp_path / "logs"))
    return InProcessExecutor()


def run(store: Store, dag: Dag, tmp_path: Path, kind: str = "inprocess") -> RunSummary:
    ex = make_executor(kind, tmp_path)
    try:
        runner = Runner(
            store, ex, home=tmp_path, clock=SystemClock(), options=RunnerOptions(seed=1234)
        )
        return runner.run(dag, FlowRef(dag.name))
    finally:
        ex.close()


def tries(store: Store, run_id: str, task_id: str) -> list[AttemptRecord]:
    rows = [a for a in store.attempts(run_id) if a.task_id == task_id]
    return sorted(rows, key=lambda a: a.try_number)


def seconds(a: datetime | None, b: datetime | None) -> float:
    assert a is not None and b is not None
    return (b - a).total_seconds()


# --- attempt counts and the back-off schedule ----------------------------------------------------


def fail_first(k: int, ctx: Any) -> str:
    """Fail the first *k* attempts, then succeed."""
    if ctx.try_number <= k:
        raise RuntimeError(f"planned failure {ctx.try_number} of {k}")
    return f"ok on try {ctx.try_number}"


DELAY = 0.5
BACKOFF = 2.0


def backoff_flow(k: int, r: int) -> Dag:
    policy = RetryPolicy(
        max_attempts=r + 1, delay=timedelta(seconds=DELAY), backoff=BACKOFF, jitter=0.0
    )
    with Flow("backoff") as f:
        t = PythonTask("t", fail_first, kwargs={"k": k}, retries=policy)
        after = PythonTask("after", fail_first, kwargs={"k": 0})
        t >> after
    return f.build()


def check_schedule(rows: list[AttemptRecord]) -> None:
    """Each gap (finished_at of try n to started_at of try n+1) is delay * backoff**(n-1) +-10%,
    and the persisted not_before is exactly finished_at + that delay."""
    for prev, nxt in itertools.pairwise(rows):
        expected = DELAY * BACKOFF ** (prev.try_number - 1)
        gap = seconds(prev.finished_at, nxt.started_at)
        assert abs(gap - expected) <= 0.1 * expected, (nxt.try_number, gap, expected)
        assert abs(seconds(prev.finished_at, nxt.not_before) - expected) < 1e-3
        assert nxt.started_at is not None and nxt.not_before is not None
        assert nxt.started_at >= nxt.not_before, "an attempt started before its back-off ended"


@pytest.mark.parametrize(
    ("k", "r"),
    [(0, 2), (1, 3), (2, 3), (3, 3), (4, 2), (5, 1), (3, 0)],
    ids=str,
)
def test_k_failures_with_r_retries_make_min_k_r_plus_one_attempts_on_schedule(
    store: Store, tmp_path: Path, k: int, r: int
) -> None:
    summary = run(store, backoff_flow(k, r), tmp_path)
    expected = min(k, r) + 1
    rows = tries(store, summary.run_id, "t")
    assert [a.try_number for a in rows] == list(range(1, expected + 1))
    assert summary.tasks["t"].attempts == expected
    assert all(a.state is TaskState.UP_FOR_RETRY for a in rows[:-1])
    assert all(a.error_type == "RuntimeError" for a in rows[:-1])
    if k <= r:
        assert rows[-1].state is TaskState.SUCCESS
        assert summary.state is RunState.SUCCESS
        assert summary.tasks["after"].state is TaskState.SUCCESS
    else:
        assert rows[-1].state is TaskState.FAILED
        assert rows[-1].error_message == f"planned failure {r + 1} of {k}"
        assert summary.state is RunState.FAILED
        assert summary.tasks["after"].state is TaskState.UPSTREAM_FAILED
    assert rows[0].not_before is None
    check_schedule(rows)


@pytest.mark.parametrize(("k", "r"), [(2, 3), (4, 2)])
def test_backoff_schedule_holds_under_the_local_process_pool(
    store: Store, tmp_path: Path, k: int, r: int
) -> None:
    summary = run(store, backoff_flow(k, r), tmp_path, kind="local")
    rows = tries(store, summary.run_id, "t")
    assert len(rows) == min(k, r) + 1
    assert rows[-1].state is (TaskState.SUCCESS if k <= r else TaskState.FAILED)
    check_schedule(rows)


@pytest.mark.postgres
def test_backoff_schedule_holds_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    pg = open_store(postgres_url)
    try:
        summary = run(pg, backoff_flow(2, 3), tmp_path)
        rows = tries(pg, summary.run_id, "t")
    finally:
        pg.close()
    assert [a.state for a in rows] == [TaskState.UP_FOR_RETRY] * 2 + [TaskState.SUCCESS]
    check_schedule(rows)


def test_max_delay_caps_the_backoff(store: Store, tmp_path: Path) -> None:
    policy = RetryPolicy(
        max_attempts=4, delay=timedelta(seconds=0.3), backoff=3.0, max_delay=timedelta(seconds=0.5)
    )
    with Flow("capped") as f:
        PythonTask("t", fail_first, kwargs={"k": 9}, retries=policy)
    summary = run(store, f.build(), tmp_path)
    rows = tries(store, summary.run_id, "t")
    assert len(rows) == 4
    waits = [seconds(p.finished_at, n.not_before) for p, n in itertools.pairwise(rows)]
    assert waits == pytest.approx([0.3, 0.5, 0.5], abs=1e-3)


def test_jitter_draws_are_reproducible_with_a_seed_and_stay_in_bounds(
    tmp_path: Path,
) -> None:
    policy = RetryPolicy(max_attempts=4, delay=timedelta(seconds=0.2), backoff=2.0, jitter=0.5)
    with Flow("jitter") as f:
        PythonTask("t", fail_first, kwargs={"k": 9}, retries=policy)
    dag = f.build()
    waits = []
    for n in range(2):
        s = open_store(f"sqlite:///{tmp_path}/jitter{n}.db")
        try:
            summary = run(s, dag, tmp_path)
            rows = tries(s, summary.run_id, "t")
        finally:
            s.close()
        waits.append([seconds(p.finished_at, q.not_before) for p, q in itertools.pairwise(rows)])
    assert waits[0] == pytest.approx(waits[1], abs=1e-3)  # same seed, same draws
    for i, wait in enumerate(waits[0]):
        base = 0.2 * 2.0**i
        assert 0.5 * base - 1e-3 <= wait <= 1.5 * base + 1e-3


# --- what is retried ---------------------------------------------------------------------------


class Transient(Exception):
    pass


class Fatal(Transient):
    """A Transient that must not be retried (listed in give_up_on)."""


def raise_it(kind: str) -> None:
    errors: dict[str, type[BaseException]] = {
        "transient": Transient,
        "fatal": Fatal,
        "key": KeyError,
        "value": ValueError,
        "perm": PermissionError,
        "notfound": FileNotFoundError,
    }
    raise errors[kind](kind)


@pytest.mark.parametrize(
    ("retry_on", "give_up_on", "kind", "attempts"),
    [
        ((ValueError,), (), "value", 3),  # listed: retried to the end
        ((ValueError,), (), "key", 1),  # not in retry_on: fails at once
        ((Transient,), (), "fatal", 3),  # a subclass of a retry_on type is retried
        ((Transient,), (Fatal,), "fatal", 1),  # ... unless it is in give_up_on
        ((Transient,), (Fatal,), "transient", 3),  # the base class is still retried
        ((OSError,), (PermissionError,), "perm", 1),
        ((OSError,), (PermissionError,), "notfound", 3),
        ((Exception,), (KeyError,), "key", 1),  # give_up_on wins over retry_on
    ],
)
def test_retry_on_and_give_up_on(
    store: Store,
    tmp_path: Path,
    retry_on: tuple[type[BaseException], ...],
    give_up_on: tuple[type[BaseException], ...],
    kind: str,
    attempts: int,
) -> None:
    policy = RetryPolicy(max_attempts=3, retry_on=retry_on, give_up_on=give_up_on)
    with Flow("which") as f:
        PythonTask("t", raise_it, args=(kind,), retries=policy)
    summary = run(store, f.build(), tmp_path)
    rows = tries(store, summary.run_id, "t")
    assert len(rows) == attempts
    assert summary.tasks["t"].attempts == attempts
    assert rows[-1].state is TaskState.FAILED
    assert [a.state for a in rows[:-1]] == [TaskState.UP_FOR_RETRY] * (attempts - 1)


# --- flow-level defaults -----------------------------------------------------------------------


def always_fails() -> None:
    raise RuntimeError("no")


def test_flow_default_retries_apply_to_tasks_that_set_none(store: Store, tmp_path: Path) -> None:
    with Flow("defaults", default_retries=2, default_retry_delay=timedelta(seconds=0.2)) as f:
        PythonTask("plain", always_fails)
        PythonTask("none", always_fails, retries=0)
        PythonTask("one", always_fails, retries=1)
        PythonTask("policy", always_fails, retries=RetryPolicy(max_attempts=4))
        PythonTask("recovers", fail_first, kwargs={"k": 2})
    summary = run(store, f.build(), tmp_path)
    counts = {tid: t.attempts for tid, t in summary.tasks.items()}
    assert counts == {"plain": 3, "none": 1, "one": 2, "policy": 4, "recovers": 3}
    assert summary.tasks["recovers"].state is TaskState.SUCCESS
    rows = tries(store, summary.run_id, "plain")
    for prev, nxt in itertools.pairwise(rows):
        assert seconds(prev.finished_at, nxt.not_before) == pytest.approx(0.2, abs=1e-3)


@task
def taskflow_fails() -> None:
    raise RuntimeError("no")


@task(retries=0)
def taskflow_no_retry() -> None:
    raise RuntimeError("no")


@flow(default_retries=RetryPolicy(max_attempts=3))
def taskflow_defaults() -> None:
    taskflow_fails()
    taskflow_no_retry()
    taskflow_fails.override(retries=1)()


def test_taskflow_default_retries(store: Store, tmp_path: Path) -> None:
    summary = run(store, taskflow_defaults.build(), tmp_path)
    counts = {tid: t.attempts for tid, t in summary.tasks.items()}
    assert counts == {"taskflow_fails": 3, "taskflow_no_retry": 1, "taskflow_fails__1": 2}


# --- a timeout is a retryable failure ----------------------------------------------------------


def slow_first(ctx: Any) -> str:
    if ctx.try_number == 1:
        time.sleep(120)
    return "fast the second time"


def test_timeout_counts_as_a_retryable_failure(store: Store, tmp_path: Path) -> None:
    with Flow("timeouts") as f:
        PythonTask("t", slow_first, timeout=1.0, retries=1)
        PythonTask("deadline", slow_first, timeout=1.0, retries=RetryPolicy(max_attempts=1))
        PythonTask(
            "give_up",
            slow_first,
            timeout=1.0,
            retries=RetryPolicy(max_attempts=3, give_up_on=(TaskTimeout,)),
        )
    summary = run(store, f.build(), tmp_path, kind="local")
    rows = tries(store, summary.run_id, "t")
    assert [a.state for a in rows] == [TaskState.UP_FOR_RETRY, TaskState.SUCCESS]
    assert rows[0].error_type == "TaskTimeout"
    assert "timed out after 1s" in (rows[0].error_message or "")
    assert seconds(rows[0].started_at, rows[0].finished_at) >= 1.0
    for tid in ("deadline", "give_up"):
        (only,) = tries(store, summary.run_id, tid)
        assert only.state is TaskState.FAILED and only.error_type == "TaskTimeout", tid
    assert summary.state is RunState.FAILED


# --- a runner killed during the back-off wait --------------------------------------------------

KILL_FLOW = """
import json, os, time
from datetime import timedelta
from pathlib import Path
from rota import RetryPolicy, flow, task

LEDGER = Path(os.environ["LEDGER"])


@task
def flaky(k: int, ctx) -> str:
    with LEDGER.open("a") as fh:
        fh.write(json.dumps({"try": ctx.try_number, "pid": os.getpid(), "at": time.time()}) + "\\n")
    if ctx.try_number <= k:
        raise RuntimeError(f"planned failure {ctx.try_number} of {k}")
    return "ok"


@task
def after(x: str) -> str:
    return x + "!"


@flow
def killable(k: int = 1, r: int = 1, delay: float = 3.0) -> None:
    policy = RetryPolicy(max_attempts=r + 1, delay=timedelta(seconds=delay), backoff=1.0)
    after(flaky.override(retries=policy, task_id="flaky")(k))
"""


def _kill_during_backoff(
    proc: subprocess.Popen[str], home: Path, run_id: str | None, try_number: int, sig: int
) -> tuple[str, datetime]:
    """Wait until the store holds try *try_number* of flaky, scheduled with a not_before still in
    the future; SIGKILL the runner then. Return the run id and the moment of the kill."""

    def scheduled() -> tuple[str, AttemptRecord] | None:
        with store_at(home) as s:
            runs = s.list_runs("killable")
            if not runs:
                return None
            rid = run_id or runs[0].run_id
            for a in s.attempts(rid):
                if a.task_id == "flaky" and a.try_number == try_number:
                    return rid, a
        return None

    rid, rec = wait_for(f"try {try_number} to be scheduled", scheduled, timeout=90, proc=proc)
    assert rec.state is TaskState.SCHEDULED and rec.not_before is not None
    assert proc.poll() is None, "the runner ended before it could be killed"
    proc.send_signal(sig)
    killed_at = datetime.now(UTC)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == (130 if sig == signal.SIGTERM else -signal.SIGKILL), err
    assert killed_at < rec.not_before, "the kill came after the back-off ended"
    return rid, killed_at


@pytest.mark.parametrize(
    ("k", "r", "kill_before", "sig"),
    [
        (1, 2, [2], signal.SIGKILL),
        (2, 2, [3], signal.SIGKILL),
        (4, 2, [2, 3], signal.SIGKILL),
        (2, 3, [2], signal.SIGTERM),
    ],
    ids=[
        "k1-r2-kill-before-try2",
        "k2-r2-kill-before-try3",
        "k4-r2-killed-twice",
        "k2-r3-sigterm-before-try2",
    ],
)
def test_attempt_count_survives_a_runner_kill_during_the_backoff(
    tmp_path: Path, k: int, r: int, kill_before: list[int], sig: int
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    flow_file = tmp_path / "killable.py"
    flow_file.write_text(textwrap.dedent(KILL_FLOW))
    ledger = tmp_path / "ledger.jsonl"
    env = cli_env(home, {"LEDGER": str(ledger), "ROTA_WORKERS": "1"})
    params = ["-p", f"k={k}", "-p", f"r={r}", "-p", "delay=3.0"]

    run_id: str | None = None
    for n, try_number in enumerate(kill_before):
        args = ["run", str(flow_file), *params] if n == 0 else ["resume", str(run_id)]
        proc = subprocess.Popen(
            rota_cmd(*args, "--json"),
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            run_id, _ = _kill_during_backoff(proc, home, run_id, try_number, sig)
        finally:
            reap(proc)
        rows = attempts_of(home, run_id, "flaky")
        assert len(rows) == try_number  # the waiting attempt is in the store, not yet started
        assert rows[-1].state is TaskState.SCHEDULED
        with store_at(home) as s:
            left = s.get_run(run_id).state
        # SIGTERM is a clean stop; a SIGKILLed runner leaves its run "running" (taken over later)
        assert left is (RunState.INTERRUPTED if sig == signal.SIGTERM else RunState.RUNNING)

    result = run_cli(home, tmp_path, "resume", str(run_id), "--json", env={"LEDGER": str(ledger)})
    expected = min(k, r) + 1
    summary = result.json()
    assert summary["tasks"]["flaky"]["attempts"] == expected, result.err
    rows = attempts_of(home, str(run_id), "flaky")
    assert [a.try_number for a in rows] == list(range(1, expected + 1))
    assert [a.state for a in rows[:-1]] == [TaskState.UP_FOR_RETRY] * (expected - 1)
    executed = [json.loads(line)["try"] for line in ledger.read_text().splitlines()]
    assert executed == list(range(1, expected + 1)), "an attempt ran twice or was skipped"
    for prev, nxt in itertools.pairwise(rows):
        assert nxt.not_before is not None and nxt.started_at is not None
        # the back-off was persisted when the attempt failed, not recomputed on resume
        assert seconds(prev.finished_at, nxt.not_before) == pytest.approx(3.0, abs=1e-3)
        assert nxt.started_at >= nxt.not_before, "a retry started before its persisted not_before"
    if k <= r:
        assert result.code == 0, result.err
        assert summary["state"] == "success"
        assert summary["tasks"]["after"]["state"] == "success"
    else:
        assert result.code == 1, result.err
        assert summary["state"] == "failed"
        assert rows[-1].state is TaskState.FAILED
        assert summary["tasks"]["after"]["state"] == "upstream_failed"


# --- other retryable failures ------------------------------------------------------------------


def dies_first(ctx: Any) -> str:
    import os

    if ctx.try_number == 1:
        os._exit(3)  # the worker process dies under the task
    return "survived"


def test_a_worker_dying_under_a_task_is_a_retryable_failure(store: Store, tmp_path: Path) -> None:
    with Flow("lost") as f:
        t = PythonTask("t", dies_first, retries=1)
        t >> PythonTask("after", fail_first, kwargs={"k": 0})
    summary = run(store, f.build(), tmp_path, kind="local")
    rows = tries(store, summary.run_id, "t")
    assert [a.state for a in rows] == [TaskState.UP_FOR_RETRY, TaskState.SUCCESS]
    assert rows[0].error_type == "WorkerLost"
    assert rows[0].exit_code == 3
    assert summary.state is RunState.SUCCESS


def fail_instance(x: int, ctx: Any) -> int:
    if x == 2 and ctx.try_number == 1:
        raise RuntimeError("instance 2 fails once")
    if x == 3:
        raise RuntimeError("instance 3 always fails")
    return x * 10


@task(retries=RetryPolicy(max_attempts=2, delay=timedelta(seconds=0.3)))
def mapped_step(x: int, ctx: Any) -> int:
    return fail_instance(x, ctx)


@flow
def mapped_retries(xs: list[int] | None = None) -> None:
    mapped_step.map(xs or [1, 2])


@pytest.mark.parametrize(("xs", "ok"), [([1, 2], True), ([1, 2, 3], False)])
def test_mapped_instances_retry_on_their_own(
    store: Store, tmp_path: Path, xs: list[int], ok: bool
) -> None:
    summary = run(store, mapped_retries.build({"xs": xs}), tmp_path)
    rows = [a for a in store.attempts(summary.run_id) if a.map_index >= 0]
    per_instance: dict[int, list[AttemptRecord]] = {}
    for a in sorted(rows, key=lambda a: (a.map_index, a.try_number)):
        per_instance.setdefault(a.map_index, []).append(a)
    assert [len(per_instance[i]) for i in range(len(xs))] == [1, 2, 2][: len(xs)]
    second = per_instance[1]
    assert [a.state for a in second] == [TaskState.UP_FOR_RETRY, TaskState.SUCCESS]
    assert seconds(second[0].finished_at, second[1].not_before) == pytest.approx(0.3, abs=1e-3)
    assert second[1].started_at is not None and second[1].not_before is not None
    assert second[1].started_at >= second[1].not_before
    whole = summary.tasks["mapped_step"]
    assert whole.state is (TaskState.SUCCESS if ok else TaskState.FAILED)
    assert summary.state is (RunState.SUCCESS if ok else RunState.FAILED)
