"""Crash tests: a 200-task flow, its runner SIGKILLed at random moments and at named fault points,
then ``rota resume`` until the run ends.

After every kill: no process of the killed runner is alive 5 s later, and SQLite's
``PRAGMA integrity_check`` is ``ok``. After every run: it ended ``success`` with all 200 tasks
``success``, and the effect ledger shows no task running again after its success was committed.

``ROTA_FAULTS=N`` sets the number of random kills (default 50); ``ROTA_FAULTS_SEED`` replays a
seed (each failure message names the one it used).
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from faultharness import (
    JOIN_VALUE,
    NO_DATABASE,
    TASK_COUNT,
    WORKERS,
    CliResult,
    Harness,
    KillReport,
    Launched,
    RunCheck,
)

RANDOM_KILLS = int(os.environ.get("ROTA_FAULTS", "50"))
SEED = int(os.environ.get("ROTA_FAULTS_SEED") or random.SystemRandom().randrange(2**32))
KILLS_PER_RUN = 5  # random kills of one run (across its successive resumes) before it may end


@dataclass
class Tally:
    kills: int = 0
    runs: list[str] = field(default_factory=list)
    checks: dict[str, RunCheck] = field(default_factory=dict)
    slowest_death_s: float = 0.0
    saw_workers: int = 0  # kills that found the runner's workers alive just before


def _context(h: Harness) -> str:
    return f"seed={SEED} (replay: ROTA_FAULTS_SEED={SEED})\nlast events:\n{h.tail_events()}"


def _check_kill(h: Harness, launched: Launched, report: KillReport, tally: Tally) -> None:
    what = f"rota {' '.join(launched.args[:2])}"
    assert not report.survivors, (
        f"{len(report.survivors)} process(es) of the killed runner ({what}) still alive "
        f"{report.dead_after_s:.1f} s after the kill:\n"
        + "\n".join(report.survivors)
        + f"\n{_context(h)}"
    )
    assert report.integrity == "ok" or (report.integrity == NO_DATABASE and not h.db.exists()), (
        f"integrity_check after killing {what}: {report.integrity}\n{_context(h)}"
    )
    assert not report.foreign_keys, f"foreign_key_check: {report.foreign_keys}\n{_context(h)}"
    tally.slowest_death_s = max(tally.slowest_death_s, report.dead_after_s)
    tally.saw_workers += report.alive_before > WORKERS


def _find_new_run(h: Harness, known: set[str]) -> str | None:
    new = set(h.runs()) - known
    assert len(new) <= 1, f"one launch created several runs: {sorted(new)}\n{_context(h)}"
    return new.pop() if new else None


def _resume_to_end(h: Harness, run_id: str) -> CliResult:
    """``rota resume --last FLOW`` (no faults) must end the run with every task ``success``."""
    result = h.cli(*h.resume_args())
    summary = result.json() if result.code in (0, 1) else None
    h.events.append(f"final resume of {run_id}: exit {result.code}")
    assert result.code == 0 and summary is not None, (
        f"resume of {run_id} exited {result.code}:\n{result.err[-3000:]}\n{_context(h)}"
    )
    assert summary["run_id"] == run_id, f"resume --last picked {summary['run_id']}, not {run_id}"
    assert summary["state"] == "success", f"{summary}\n{_context(h)}"
    states = {t["state"] for t in summary["tasks"].values()}
    assert len(summary["tasks"]) == TASK_COUNT and states == {"success"}, states
    return result


def _nothing_to_resume(h: Harness) -> None:
    early = h.cli(*h.resume_args())
    assert early.code == 2 and "no unfinished run" in early.err, f"{early}\n{_context(h)}"


def _verify(h: Harness, run_id: str, tally: Tally) -> None:
    check = h.verify_run(run_id)
    tally.checks[run_id] = check
    tally.runs.append(run_id)
    assert not check.problems, "\n".join(check.problems) + f"\n{_context(h)}"
    assert h.join_output(run_id) == JOIN_VALUE


def _drive_with_random_kills(
    h: Harness, rng: random.Random, typical: float, kills: int, tally: Tally
) -> None:
    """Start a run, then SIGKILL the runner up to *kills* times, each at a random moment of a
    launch (``run`` first, then ``resume --last``); then resume it to the end and check it."""
    known = set(h.runs())
    run_id: str | None = None
    done = False
    landed = 0
    while landed < kills and not done:
        if run_id is None and landed:  # killed before the run existed: nothing to resume
            _nothing_to_resume(h)
        launched = h.launch(*(h.run_args() if run_id is None else h.resume_args()))
        delay = rng.uniform(0.0, typical)
        out = err = ""
        try:
            out, err = launched.proc.communicate(timeout=delay)
        except subprocess.TimeoutExpired:  # still running: kill it now
            report = h.kill(launched)
        else:  # it ended on its own before the kill
            report = h.after_death(launched, time.monotonic())
        run_id = run_id or _find_new_run(h, known)
        state = h.runs().get(run_id) if run_id else None
        h.events.append(
            f"{launched.args[0]} +{delay:.3f}s -> exit {report.returncode}, run {run_id} {state}, "
            f"workers gone after {report.dead_after_s:.2f}s, integrity {report.integrity!r}"
        )
        if report.killed:
            landed += 1
            tally.kills += 1
            _check_kill(h, launched, report, tally)
        else:
            assert report.returncode == 0, f"{report}\n{out[-500:]}\n{err[-3000:]}\n{_context(h)}"
            assert not report.survivors, f"workers outlived their runner: {report.survivors}"
        done = state == "success"
    if run_id is None:  # the last kill came before the run existed: run it anew, to the end
        _nothing_to_resume(h)
        result = h.cli(*h.run_args())
        assert result.code == 0, f"{result.err[-3000:]}\n{_context(h)}"
        run_id = result.json()["run_id"]
    elif not done:
        _resume_to_end(h, run_id)
    _verify(h, run_id, tally)


@pytest.fixture(scope="module")
def typical_duration(tmp_path_factory: pytest.TempPathFactory) -> float:
    """Seconds one uninterrupted run of the flow takes, start-up included (the kills' range)."""
    h = Harness(tmp_path_factory.mktemp("baseline"))
    start = time.monotonic()
    result = h.cli(*h.run_args())
    took = time.monotonic() - start
    assert result.code == 0, result.err
    return took


def test_uninterrupted_run_executes_each_task_once(tmp_path: Path, typical_duration: float) -> None:
    h = Harness(tmp_path)
    result = h.cli(*h.run_args())
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["state"] == "success"
    assert len(summary["tasks"]) == TASK_COUNT
    check = h.verify_run(summary["run_id"])
    assert not check.problems, check.problems
    assert check.executions == TASK_COUNT
    assert h.join_output(summary["run_id"]) == JOIN_VALUE
    assert typical_duration > 0


def test_random_sigkills_each_followed_by_resume(tmp_path: Path, typical_duration: float) -> None:
    rng = random.Random(SEED)
    h = Harness(tmp_path)
    tally = Tally()
    start = time.monotonic()
    while tally.kills < RANDOM_KILLS:
        _drive_with_random_kills(
            h, rng, typical_duration, min(KILLS_PER_RUN, RANDOM_KILLS - tally.kills), tally
        )
    took = time.monotonic() - start
    duplicates = [d for c in tally.checks.values() for d in c.duplicate_tries]
    print(
        f"\n{tally.kills} random SIGKILLs over {len(tally.runs)} runs in {took:.1f} s "
        f"(seed {SEED}, kill range {typical_duration:.2f} s); workers gone within "
        f"{tally.slowest_death_s:.2f} s; {sum(c.executions for c in tally.checks.values())} "
        f"task executions for {len(tally.runs) * TASK_COUNT} tasks; "
        f"{len(duplicates)} (task, try) pairs executed twice; workers seen before "
        f"{tally.saw_workers} kills"
    )
    assert tally.kills >= RANDOM_KILLS
    # the check for survivors is only worth something if it can see the workers
    assert tally.saw_workers > 0, "no kill found the runner's workers alive: is the scan blind?"


NAMED = [
    ("run_created", 1),
    ("claimed", 1),
    ("claimed", 120),
    ("output_written", 1),
    ("output_written", 100),
    ("success_committed", 1),
    ("success_committed", 15),
]


@pytest.mark.parametrize(("point", "nth"), NAMED, ids=[f"{p}-{n}" for p, n in NAMED])
def test_named_fault_point_then_resume(tmp_path: Path, point: str, nth: int) -> None:
    h = Harness(tmp_path)
    tally = Tally()
    launched = h.launch(*h.run_args(), fault_points=f"{point}:{nth}")
    result = h.finish(launched)
    report = h.after_death(launched, time.monotonic())
    assert report.killed, f"{point}:{nth} was not reached (exit {result.code}): {result.err}"
    tally.kills += 1
    _check_kill(h, launched, report, tally)
    (run_id,) = h.runs()
    h.events.append(f"killed at {point}:{nth}; run {run_id} {h.runs()[run_id]}")
    _resume_to_end(h, run_id)
    _verify(h, run_id, tally)


CHAIN = [("run", "claimed:60"), ("resume", "output_written:30"), ("resume", "success_committed:5")]
CHAIN += [("resume", "claimed:1"), ("resume", "output_written:1")]


def test_named_fault_points_in_successive_resumes(tmp_path: Path) -> None:
    """The runner of the run and of each resume is killed at a named point in turn."""
    h = Harness(tmp_path)
    tally = Tally()
    for command, points in CHAIN:
        args = h.run_args() if command == "run" else h.resume_args()
        launched = h.launch(*args, fault_points=points)
        result = h.finish(launched)
        report = h.after_death(launched, time.monotonic())
        h.events.append(f"{command} with {points}: exit {result.code}")
        assert report.killed, f"{command} with {points} was not killed: {result.err}"
        _check_kill(h, launched, report, tally)
    (run_id,) = h.runs()
    _resume_to_end(h, run_id)
    _verify(h, run_id, tally)


def _kill_soon_after_the_store_appears(h: Harness, rng: random.Random, tally: Tally) -> str:
    """Start the first run in a fresh home and SIGKILL it 0-200 ms after its SQLite file appears
    (migrations, the run's creation, the first claims); return what the kill left."""
    launched = h.launch(*h.run_args())
    while not h.db.exists() and launched.proc.poll() is None:
        time.sleep(0.002)
    delay = rng.uniform(0.0, 0.2)
    time.sleep(delay)
    report = h.kill(launched)
    assert report.killed, f"the run ended before the kill: {report}"
    _check_kill(h, launched, report, tally)
    tables = h.tables()
    runs = h.runs()
    h.events.append(f"killed {delay * 1000:.0f} ms after the store appeared: {tables} {runs}")
    return f"{len(tables)} tables, runs {list(runs.values())}"


def test_kills_while_the_store_is_created_then_run_or_resume(tmp_path: Path) -> None:
    """The first run in a fresh ROTA_HOME killed while it migrates the schema or creates the
    run: the next ``resume --last`` finds the run, or reports none (then a new run)."""
    rng = random.Random(SEED)
    seen = []
    for i in range(6):
        h = Harness(tmp_path / f"home{i}")
        tally = Tally()
        seen.append(_kill_soon_after_the_store_appears(h, rng, tally))
        runs = h.runs()
        if not runs:
            _nothing_to_resume(h)
            result = h.cli(*h.run_args())
            assert result.code == 0, f"{result.err[-3000:]}\n{_context(h)}"
            run_id = result.json()["run_id"]
        else:
            (run_id,) = runs
            _resume_to_end(h, run_id)
        _verify(h, run_id, tally)
    print(f"\nstates left by kills during store creation: {seen}")
