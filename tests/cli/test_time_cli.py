"""Dates at the command line as Airflow reads them (issue 10, section 4): backfill ranges end at
the latest logical date included, a --flows name wins over a same-named folder here, an empty range
says why, `rota run --logical-date D` is the scheduled run of D in the foreground (Airflow's
`dags test DAG D`), and manual runs get the trigger time as their logical date."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clihelp import RotaCli

from rota.model.states import RunState
from rota.store.base import RunRecord
from rota.store.sql import SqlStore

WriteFlow = Callable[[str, str], Path]

FAST = {"ROTA_EXECUTOR": "threads", "ROTA_WORKERS": "1", "COLUMNS": "200"}

SEEN = """
    from datetime import datetime
    from pathlib import Path
    from rota import flow, task

    @task
    def seen(ctx) -> str:
        dates = (ctx.logical_date, ctx.data_interval_start, ctx.data_interval_end)
        line = " ".join(d.isoformat() for d in dates)
        with (Path(__file__).parent.parent / "seen.txt").open("a") as f:
            f.write(f"{{ctx.run_id}} {{line}}\\n")
        return line

    @flow(schedule={schedule!r}, timezone={zone!r}{extra})
    def {name}():
        seen()
"""


def _flow(
    write_flow: WriteFlow, name: str, schedule: str | None, zone: str = "UTC", **kw: str
) -> Path:
    extra = "".join(f", {k}={v}" for k, v in kw.items())
    return write_flow(
        f"{name}.py", SEEN.format(name=name, schedule=schedule, zone=zone, extra=extra)
    )


def _seen(tmp_path: Path) -> dict[str, list[str]]:
    """What each run's task saw: run id -> [logical date, interval start, interval end]."""
    path = tmp_path / "seen.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return {run_id: rest for run_id, *rest in (line.split() for line in lines)}


def _rows(out: str) -> list[str]:
    """The plan table's rows, oldest first."""
    return [line for line in out.splitlines() if line.startswith("│") and "→" in line]


def _dates(run: RunRecord) -> list[str]:
    assert run.logical_date and run.data_interval_start and run.data_interval_end
    return [
        d.isoformat() for d in (run.logical_date, run.data_interval_start, run.data_interval_end)
    ]


# --- backfill ranges -----------------------------------------------------------------------------


def test_a_backfill_of_march_1_to_30_plans_30_runs_and_a_start_at_noon_begins_the_next_day(
    rota: RotaCli, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = str(_flow(write_flow, "daily", "@daily"))
    plan = rota("backfill", path, "--start", "2026-03-01", "--end", "2026-03-30", "--dry-run")
    assert plan.code == 0, plan.err
    rows = _rows(plan.out)
    assert "30 interval(s)" in plan.out and len(rows) == 30  # Airflow: 30 (Rota planned 29)
    assert "2026-03-01 → 2026-03-02" in rows[0] and "2026-03-30 → 2026-03-31" in rows[-1]
    noon = rota("backfill", path, "--start", "2026-03-01T12:00", "--end", "2026-03-30", "--dry-run")
    assert noon.code == 0, noon.err
    assert "2026-03-02 → 2026-03-03" in _rows(noon.out)[0]  # Airflow: first run 03-02
    assert len(_rows(noon.out)) == 29
    assert store.list_runs() == [], "a dry run stores nothing"


def test_a_range_before_start_date_says_why_it_has_no_intervals(
    rota: RotaCli, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = str(_flow(write_flow, "late", "@daily", start_date="datetime(2026, 6, 1)"))
    done = rota("backfill", path, "--start", "2026-01-01", "--end", "2026-01-31")
    assert done.code == 0, done.err
    assert (
        "backfill of flow late: 0 intervals: the range ends before the schedule's start_date "
        "2026-06-01T00:00:00+00:00: its first logical date is 2026-06-01T00:00:00+00:00"
    ) in done.err
    assert store.list_runs() == []


def test_a_flow_name_in_flows_wins_over_a_same_named_folder_here(
    rota: RotaCli, tmp_path: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    flows = _flow(write_flow, "nightly", "@daily").parent
    here = tmp_path / "nightly"  # the working directory of `rota` is tmp_path
    here.mkdir()
    (here / "other.py").write_text(
        textwrap.dedent(SEEN.format(name="other", schedule="@hourly", zone="UTC", extra=""))
    )

    plan = rota("backfill", "nightly", "--flows", str(flows), "--start", "2026-01-01",
                "--end", "2026-01-02", "--dry-run")  # fmt: skip
    assert plan.code == 0, plan.err
    assert "backfill of flow nightly: 2 interval(s)" in plan.out  # not the folder's hourly flow
    queued = rota("trigger", "nightly", "--flows", str(flows))
    assert queued.code == 0, queued.err
    assert [r.flow for r in store.list_runs()] == ["nightly"]
    # a path still names the folder's flow, and a flow file is read as a path without a lookup
    by_path = rota("backfill", "nightly/other.py", "--flows", str(flows), "--start", "2026-01-01",
                   "--end", "2026-01-01T02:00", "--dry-run")  # fmt: skip
    assert by_path.code == 0, by_path.err
    assert "backfill of flow other: 3 interval(s)" in by_path.out


# --- rota run --logical-date: the scheduled run of one date, in the foreground ------------------


def test_run_logical_date_is_the_scheduled_run_of_that_date_across_a_fold(
    rota: RotaCli, tmp_path: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = str(_flow(write_flow, "zurich", "0 2 * * *", "Europe/Zurich"))
    done = rota("run", path, "--logical-date", "2023-10-28T02:00", env=FAST)
    assert done.code == 0, done.err
    (run,) = store.list_runs("zurich")
    assert (run.state, run.run_type) == (RunState.SUCCESS, "manual")
    # the interval the schedule makes for 10-28 02:00 CEST: it ends at 02:00 CET, the repeated
    # wall time's second occurrence (Airflow: [2023-10-28 00:00Z, 2023-10-29 01:00Z))
    expected = [
        "2023-10-28T00:00:00+00:00",
        "2023-10-28T00:00:00+00:00",
        "2023-10-29T01:00:00+00:00",
    ]
    assert _dates(run) == expected
    assert _seen(tmp_path)[run.run_id] == expected  # what the task saw

    again = rota("run", path, "--logical-date", "2023-10-28T02:00+02:00", env=FAST)
    assert again.code == 2
    assert again.err.strip().splitlines() == [
        f"rota: error: flow 'zurich' has run {run.run_id} for 2023-10-28T00:00:00+00:00 already: "
        f"`rota resume {run.run_id}` continues it, `rota clear {run.run_id} --task ID` runs tasks "
        "of it again"
    ]
    off = rota("run", path, "--logical-date", "2023-10-28", env=FAST)
    assert off.code == 2
    assert off.err.strip().splitlines() == [
        "rota: error: --logical-date 2023-10-28T00:00:00+02:00 is not a logical date of flow "
        "'zurich' (0 2 * * * (Europe/Zurich)): the nearest are 2023-10-27T02:00:00+02:00 and "
        "2023-10-28T02:00:00+02:00"
    ]
    assert [r.run_id for r in store.list_runs()] == [run.run_id], "refusals store nothing"
    # a backfill of that date finds the run and keeps it
    plan = rota(
        "backfill",
        path,
        "--start",
        "2023-10-28",
        "--end",
        "2023-10-28T02:00",
        "--dry-run",
        env=FAST,
    )
    (row,) = _rows(plan.out)
    assert "skip" in row and "succeeded and current" in row and run.run_id in row


def test_run_logical_date_of_a_flow_without_a_schedule_is_that_instant(
    rota: RotaCli, tmp_path: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = str(_flow(write_flow, "adhoc", None))
    done = rota("run", path, "--logical-date", "2026-03-01T10:30", env=FAST)
    assert done.code == 0, done.err
    (run,) = store.list_runs("adhoc")
    assert _dates(run) == ["2026-03-01T10:30:00+00:00"] * 3
    assert _seen(tmp_path)[run.run_id] == _dates(run)


# --- manual runs: the trigger time is the logical date ------------------------------------------


def test_manual_runs_get_the_trigger_time_as_their_logical_date(
    rota: RotaCli, tmp_path: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = str(_flow(write_flow, "daily", "@daily"))
    adhoc = str(_flow(write_flow, "adhoc", None))
    before = datetime.now(UTC)
    for args in ((path,), (path,), (adhoc,)):
        done = rota("run", *args, env=FAST)
        assert done.code == 0, done.err
    queued = rota("trigger", path)
    assert queued.code == 0, queued.err
    after = datetime.now(UTC)

    runs = sorted(store.list_runs(), key=lambda r: r.created_at)
    assert [(r.flow, r.run_type) for r in runs] == [
        ("daily", "manual"), ("daily", "manual"), ("adhoc", "manual"), ("daily", "triggered"),
    ]  # fmt: skip
    seen = _seen(tmp_path)
    for run in runs:
        assert run.logical_date is not None and before <= run.logical_date <= after
        assert run.data_interval_start is not None and run.data_interval_end is not None
        if run.flow == "daily":  # Airflow: the last interval complete at the trigger time
            midnight = run.logical_date.replace(hour=0, minute=0, second=0, microsecond=0)
            assert (run.data_interval_start, run.data_interval_end) == (
                midnight - timedelta(days=1),
                midnight,
            )
        else:  # no schedule: the instant itself
            assert run.data_interval_start == run.data_interval_end == run.logical_date
        if run.run_type == "manual":
            assert seen[run.run_id] == _dates(run)
    assert len({r.logical_date for r in runs if r.flow == "daily"}) == 3  # one run per date
    listed = rota("runs", "list", "--json")
    assert all(row["logical_date"] for row in listed.json())


def test_trigger_logical_date_is_the_scheduled_run_of_that_date(
    rota: RotaCli, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = str(_flow(write_flow, "berlin", "30 2 * * *", "Europe/Berlin"))
    off = rota("trigger", path, "--logical-date", "2026-03-29T02:30")  # 02:30 does not exist
    # read as the schedule reads it, 03:30 CEST, which is the 29th's logical date: queued
    assert off.code == 0, off.err
    (run,) = store.list_runs("berlin")
    assert run.run_type == "triggered" and run.state is RunState.QUEUED
    assert _dates(run) == [
        "2026-03-29T01:30:00+00:00", "2026-03-29T01:30:00+00:00", "2026-03-30T00:30:00+00:00",
    ]  # fmt: skip
    refused = rota("trigger", path, "--logical-date", "2026-03-30T03:00")
    assert refused.code == 2 and "is not a logical date of flow 'berlin'" in refused.err
    assert "the nearest are 2026-03-30T02:30:00+02:00 and 2026-03-31T02:30:00+02:00" in refused.err
    assert len(store.list_runs()) == 1
