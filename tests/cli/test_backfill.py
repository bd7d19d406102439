"""`rota backfill`: one run per interval within --max-active-runs, a killed backfill finished by the
next one, --rerun levels, a dry-run plan with its reasons, and overlapping backfills that never
make two runs for one date."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clihelp import RotaCli, rota_env, wait_for

from rota.engine.lease import RunnerId, provably_dead
from rota.model.states import RunState
from rota.store.base import RunRecord
from rota.store.sql import SqlStore

WriteFlow = Callable[[str, str], Path]

FAST = {"ROTA_EXECUTOR": "threads", "ROTA_WORKERS": "1", "COLUMNS": "200"}

DAILY = """
    import time
    from pathlib import Path
    from rota import flow, task

    MARKS = Path(__file__).parent.parent / "marks"

    @task
    def work(ctx) -> str:
        began = time.time()
        time.sleep(0.3)
        day = ctx.logical_date.date().isoformat()
        MARKS.mkdir(exist_ok=True)
        with (MARKS / "work.txt").open("a") as f:  # written once the work is done
            f.write(f"{day} {ctx.run_id} {began} {time.time()}\\n")
        return day

    @flow(schedule="@daily")
    def daily():
        work()
"""

TWO_STEPS = """
    from pathlib import Path
    from rota import flow, task

    HERE = Path(__file__).parent.parent
    FAIL = HERE / "fail"

    def mark(name: str, day: str) -> None:
        (HERE / "marks").mkdir(exist_ok=True)
        with (HERE / "marks" / f"{name}.txt").open("a") as f:
            f.write(day + "\\n")

    @task
    def a(ctx) -> str:
        day = ctx.logical_date.date().isoformat()
        mark("a", day)
        return day

    @task
    def b(day: str, ctx) -> str:
        mark("b", day)
        if FAIL.exists() and ctx.logical_date.day in (1, 3):
            raise RuntimeError("asked to fail")
        return day + "-v1"

    @flow(schedule="@daily")
    def steps():
        b(a())
"""


def _start(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rota", "backfill", *args],
        env=rota_env(home, **FAST), cwd=home.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _live_owners(store: SqlStore, flow: str) -> list[int]:
    """Pids of the live processes that hold a lease on a run of *flow*."""
    owners = [RunnerId.parse(r.owner) for r in store.runs_for_dates(flow) if r.owner]
    return [o.pid for o in owners if o is not None and not provably_dead(o)]


def _drivers_let_go(store: SqlStore, flow: str, grace: float) -> None:
    """Assert that the drivers of a killed backfill give their runs up within *grace* seconds:
    their lifeline closed, so each interrupts its run and exits."""
    wait_for(lambda: not _live_owners(store, flow), grace)


def _marks(home: Path, name: str) -> Counter[str]:
    path = home.parent / "marks" / f"{name}.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(line.split()[0] for line in lines)


def _day(run: RunRecord) -> int:
    assert run.logical_date is not None
    return run.logical_date.day


def _max_overlap(spans: list[tuple[datetime, datetime]]) -> int:
    """The most spans open at one instant (an end and a start at one instant do not overlap)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    return max(itertools.accumulate(step for _, step in events))


def test_30_daily_intervals_with_max_active_runs_4_make_30_runs_never_more_than_4_active(
    rota: RotaCli, home: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = write_flow("daily.py", DAILY)
    args = ("--start", "2026-01-01", "--end", "2026-01-30", "--max-active-runs", "4")
    done = rota("backfill", str(path), *args, env=FAST)
    assert done.code == 0, done.err
    assert "30 succeeded, 0 failed" in done.out
    runs = store.runs_for_dates("daily")
    assert len(runs) == 30
    assert all(r.state is RunState.SUCCESS and r.run_type == "backfill" for r in runs)
    dates = [r.logical_date for r in runs]
    assert dates[0] == datetime(2026, 1, 1, tzinfo=UTC)
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(dates))  # type: ignore[operator]
    # a run is active from its creation (runs are created only when a slot is free) to its end
    spans = [(r.created_at, r.ended_at) for r in runs if r.ended_at is not None]
    assert len(spans) == 30
    assert 2 <= _max_overlap(spans) <= 4
    assert set(_marks(home, "work").values()) == {1} and len(_marks(home, "work")) == 30


def test_a_backfill_killed_midway_then_run_again_runs_only_the_missing_dates(
    rota: RotaCli, home: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = write_flow("daily.py", DAILY)
    args = (str(path), "--start", "2026-01-01", "--end", "2026-01-30", "--max-active-runs", "3")
    first = _start(home, *args)
    try:
        wait_for(lambda: len(store.runs_in_states([RunState.SUCCESS], "daily")) >= 5, 60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
    # the drivers notice their lifeline closed and give their runs up
    _drivers_let_go(store, "daily", grace=10)
    before = {r.logical_date: r for r in store.runs_for_dates("daily")}
    done_before = {d: r for d, r in before.items() if r.state is RunState.SUCCESS}
    assert len(before) - len(done_before) <= 3, "runs are created only for free slots"
    again = rota("backfill", *args, env=FAST)
    assert again.code == 0, again.err
    assert f"{len(done_before)} skipped" in again.out
    runs = store.runs_for_dates("daily")
    assert len(runs) == 30 and all(r.state is RunState.SUCCESS for r in runs)
    assert len({r.logical_date for r in runs}) == 30
    for run in runs:  # runs of the first pass kept their ids; its successes were not re-run
        if run.logical_date in before:
            assert run.run_id == before[run.logical_date].run_id
    marks = _marks(home, "work")
    assert len(marks) == 30
    for date, run in done_before.items():
        assert date is not None and marks[date.date().isoformat()] == 1
        assert [a.try_number for a in store.attempts(run.run_id)] == [1]


def test_rerun_failed_reruns_only_the_failed_tasks(
    rota: RotaCli, home: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = write_flow("steps.py", TWO_STEPS)
    (home.parent / "fail").touch()
    args = (str(path), "--start", "2026-01-01", "--end", "2026-01-04")
    first = rota("backfill", *args, env=FAST)
    assert first.code == 1, first.err
    assert "2 succeeded, 2 failed" in first.out
    runs = {_day(r): r for r in store.runs_for_dates("steps")}
    assert [runs[d].state for d in (1, 2, 3, 4)] == [RunState.FAILED, RunState.SUCCESS] * 2
    (home.parent / "fail").unlink()
    plain = rota("backfill", *args, env=FAST)  # without --rerun, failed runs are left alone
    assert plain.code == 0 and "4 skipped" in plain.out, plain.err
    again = rota("backfill", *args, "--rerun", "failed", env=FAST)
    assert again.code == 0, again.err
    assert "2 succeeded, 0 failed, 0 interrupted, 2 skipped" in again.out
    after = {_day(r): r for r in store.runs_for_dates("steps")}
    assert all(r.state is RunState.SUCCESS for r in after.values())
    assert {d: r.run_id for d, r in after.items()} == {d: r.run_id for d, r in runs.items()}
    assert _marks(home, "a") == dict.fromkeys(
        ("2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"), 1
    )
    assert _marks(home, "b") == {
        "2026-01-01": 2, "2026-01-02": 1, "2026-01-03": 2, "2026-01-04": 1,
    }  # fmt: skip


def _plan_rows(out: str) -> dict[str, str]:
    """Plan table rows by interval start date."""
    return {
        line.split("│")[1].split()[0]: line
        for line in out.splitlines()
        if line.startswith("│") and "→" in line
    }


def test_dry_run_prints_the_plan_with_each_reason_and_writes_nothing(
    rota: RotaCli, home: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = write_flow("steps.py", TWO_STEPS)
    assert (
        rota("backfill", str(path), "--start", "2026-01-01", "--end", "2026-01-02", env=FAST).code
        == 0
    )
    path.write_text(path.read_text().replace('"-v1"', '"-v2"'))  # edit b's body
    (home.parent / "fail").touch()  # b fails on the 3rd
    second = rota("backfill", str(path), "--start", "2026-01-03", "--end", "2026-01-04", env=FAST)
    assert second.code == 1, second.err
    states = {r.run_id: r.state for r in store.runs_for_dates("steps")}
    assert len(states) == 4

    plan = rota("backfill", str(path), "--start", "2026-01-01", "--end", "2026-01-05", "--dry-run",
                env=FAST)  # fmt: skip
    assert plan.code == 0, plan.err
    rows = _plan_rows(plan.out)
    assert sorted(rows) == [f"2026-01-0{d}" for d in range(1, 6)]
    changed = "succeeded, but the code of task b changed (use --rerun changed)"
    assert "skip" in rows["2026-01-01"] and changed in rows["2026-01-01"]
    assert changed in rows["2026-01-02"]
    assert "skip" in rows["2026-01-03"] and "failed (use --rerun failed)" in rows["2026-01-03"]
    assert "skip" in rows["2026-01-04"] and "succeeded and current" in rows["2026-01-04"]
    assert "run" in rows["2026-01-05"] and "no run yet" in rows["2026-01-05"]
    for run_id in states:
        assert run_id in plan.out

    more = rota("backfill", str(path), "--start", "2026-01-01", "--end", "2026-01-05", "--dry-run",
                "--rerun", "changed", env=FAST)  # fmt: skip
    rows = _plan_rows(more.out)
    assert "rerun" in rows["2026-01-01"] and "the code of task b changed" in rows["2026-01-01"]
    assert "resume" in rows["2026-01-03"] and "failed: re-runs its failed tasks: b" in more.out
    assert {r.run_id: r.state for r in store.runs_for_dates("steps")} == states


def test_overlapping_backfills_make_one_run_per_date_and_report_dates_taken(
    home: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = str(write_flow("daily.py", DAILY))
    up = _start(
        home, path, "--start", "2026-01-01", "--end", "2026-01-12", "--max-active-runs", "2"
    )
    down = _start(home, path, "--start", "2026-01-06", "--end", "2026-01-18",
                  "--max-active-runs", "2", "--reverse")  # fmt: skip
    (_, up_err), (_, down_err) = up.communicate(timeout=120), down.communicate(timeout=120)
    assert (up.returncode, down.returncode) == (0, 0), up_err + down_err
    runs = store.runs_for_dates("daily")
    assert len(runs) == 18 and len({r.logical_date for r in runs}) == 18
    assert all(r.state is RunState.SUCCESS for r in runs)
    assert "taken: 2026-01-" in up_err + down_err
    marks = _marks(home, "work")
    assert len(marks) == 18 and set(marks.values()) == {1}, "no date ran twice"


def test_bad_input_is_one_line_and_exit_2(
    rota: RotaCli, home: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = str(write_flow("daily.py", DAILY))
    backwards = rota("backfill", path, "--start", "2026-01-05", "--end", "2026-01-01")
    assert backwards.code == 2
    assert backwards.err.strip().splitlines() == [
        "rota: error: --end 2026-01-01T00:00:00+00:00 is before --start 2026-01-05T00:00:00+00:00"
    ]
    manual = str(write_flow("manual.py", "from rota import flow\n\n@flow\ndef m():\n    pass\n"))
    unscheduled = rota("backfill", manual, "--start", "2026-01-01", "--end", "2026-01-05")
    assert unscheduled.code == 2 and "has no cron or timedelta schedule" in unscheduled.err
    zero = rota("backfill", path, "--start", "2026-01-01", "--end", "2026-01-05",
                "--max-active-runs", "0")  # fmt: skip
    assert zero.code == 2
    not_date = rota("backfill", path, "--start", "soon", "--end", "2026-01-05")
    assert not_date.code == 2 and "--start: not an ISO date" in not_date.err
    assert store.list_runs() == []


def test_sigterm_stops_the_drivers_and_exits_130_leaving_runs_to_resume(
    rota: RotaCli, home: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = str(write_flow("daily.py", DAILY))
    args = (path, "--start", "2026-01-01", "--end", "2026-01-20")
    proc = _start(home, *args)
    try:
        wait_for(lambda: bool(store.runs_in_states([RunState.SUCCESS], "daily")), 60)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "rota: interrupted" in err
    owners = [RunnerId.parse(r.owner) for r in store.runs_for_dates("daily") if r.owner]
    assert all(o is not None and provably_dead(o) for o in owners), "a driver outlived us"
    again = rota("backfill", *args, env=FAST)
    assert again.code == 0, again.err
    runs = store.runs_for_dates("daily")
    assert len(runs) == 20 and all(r.state is RunState.SUCCESS for r in runs)
