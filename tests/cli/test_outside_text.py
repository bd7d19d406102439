"""Text that did not come from Rota is printed as text: never read as Rich markup, never a
terminal control. Each test runs the real ``rota`` command and checks what it printed."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clihelp import RotaCli, rota_env, wait_for

from rota.cli import render
from rota.cli.console import SafeConsole
from rota.engine.flowdir import FlowFolder
from rota.engine.launcher import DriverLauncher
from rota.engine.scheduler import Scheduler, SchedulerOptions
from rota.model.states import RunState
from rota.store.sql import SqlStore
from rota.testing import FakeClock

WriteFlow = Callable[[str, str], Path]

HOSTILE = "[/] [link=http://x]y[/link] [bold]b :smile: \x1b[31mred\x1b]0;title\x07 \u202eevil"
"""Markup that would break or be rendered, an emoji code, a colour, a window title, a bidi
override: an error message or a parameter may hold any of them."""
SHOWN = "[/] [link=http://x]y[/link] [bold]b :smile: \\x1b[31mred\\x1b]0;title\\x07 \\u202eevil"
"""How Rota prints it: every character, the controls as visible escapes."""

RAISES_PARAM = """
from rota import flow, task

@task
def boom(msg: str) -> None:
    print("log:", msg)
    raise ValueError(msg)

@flow
def hostile(msg: str = "x"):
    boom(msg)
"""

BAD_AT_IMPORT = "from rota import flow\n\nraise ValueError({message!r})\n"

EVERY = """
from datetime import datetime, timedelta
from rota import flow, task

@task
def tick() -> str:
    return "ok"

@flow(schedule=timedelta(seconds={seconds}), start_date=datetime(2026, 1, 1), catchup=False)
def {name}():
    tick()
"""


def _no_controls(*texts: str) -> None:
    """No control character from a value reached the output."""
    for t in texts:
        assert "\x1b" not in t and "\x07" not in t and "\u202e" not in t, t


def _clean(*texts: str) -> None:
    """No control character from a value reached the output, and Rota did not crash."""
    _no_controls(*texts)
    for t in texts:
        assert "Traceback" not in t and "MarkupError" not in t, t


def test_run_runs_show_and_logs_print_a_hostile_error_literally(
    rota: RotaCli, write_flow: WriteFlow
) -> None:
    path = write_flow("hostile.py", RAISES_PARAM)
    ran = rota("run", str(path), "-p", f"msg={HOSTILE}", "--executor", "inprocess")
    assert ran.code == 1, ran.err
    _clean(ran.out, ran.err)
    assert f"boom (attempt 1): ValueError: {SHOWN}\n" in ran.err
    run_id = ran.err.split()[1]  # "run <id> of flow hostile started"

    shown = rota("runs", "show", run_id)
    assert shown.code == 0, shown.err
    _clean(shown.out, shown.err)
    assert f"boom (attempt 1): ValueError: {SHOWN}\n" in shown.out

    logs = rota("tasks", "logs", run_id, "boom")
    assert logs.code == 0, logs.err
    _no_controls(logs.out)  # the task's own traceback is in its log, escaped too
    assert f"log: {SHOWN}\n" in logs.out
    assert f"ValueError: {SHOWN}\n" in logs.out
    raw = rota("tasks", "logs", run_id, "boom", "--raw")
    assert f"log: {HOSTILE}\n" in raw.out  # --raw: the bytes as the task wrote them


def test_flows_list_names_a_hostile_bad_file_on_one_line_and_lists_the_good(
    rota: RotaCli, write_flow: WriteFlow
) -> None:
    write_flow("good.py", RAISES_PARAM)
    bad = write_flow("bad.py", BAD_AT_IMPORT.format(message=HOSTILE + "\nsecond line"))
    listed = rota("flows", "list", str(bad.parent))
    assert listed.code == 2
    _clean(listed.out, listed.err)
    assert listed.out.startswith("hostile  (1 tasks, manual)")
    assert listed.err == (
        f"rota: error: {bad}:3: import failed: ValueError: {SHOWN}\\nsecond line\n"
    )
    as_json = rota("flows", "list", str(bad.parent), "--json").json()
    assert [f["flow"] for f in as_json["flows"]] == ["hostile"]
    assert as_json["errors"] == [f"{bad}:3: import failed: ValueError: {HOSTILE}\nsecond line"]


def test_a_bad_run_target_is_one_safe_line(rota: RotaCli, write_flow: WriteFlow) -> None:
    bad = write_flow("bad.py", BAD_AT_IMPORT.format(message=HOSTILE))
    result = rota("run", str(bad))
    assert result.code == 2
    _clean(result.out, result.err)
    assert result.err == f"rota: error: {bad}:3: import failed: ValueError: {SHOWN}\n"


def test_scheduler_once_names_the_bad_file_and_runs_the_good_flow(
    rota: RotaCli, write_flow: WriteFlow, store: SqlStore
) -> None:
    write_flow("good.py", EVERY.format(seconds=3600, name="hourly"))
    bad = write_flow("bad.py", BAD_AT_IMPORT.format(message=HOSTILE))
    result = rota("scheduler", "--flows", str(bad.parent), "--once")
    assert result.code == 0, result.err
    _clean(result.out, result.err)
    lines = result.err.splitlines()
    assert f"bad flow file {bad}:3: import failed: ValueError: {SHOWN}" in lines
    (run,) = store.list_runs("hourly")
    assert run.state is RunState.SUCCESS
    assert f"run {run.run_id} succeeded" in lines


def test_the_daemon_keeps_scheduling_good_flows_for_a_minute_beside_bad_files(
    store: SqlStore, home: Path, write_flow: WriteFlow
) -> None:
    write_flow("good.py", EVERY.format(seconds=10, name="often"))
    write_flow("manual.py", RAISES_PARAM)
    bad = write_flow("bad.py", BAD_AT_IMPORT.format(message=HOSTILE))
    worse = write_flow("worse.py", "from rota import flow\n\nraise SystemExit('\\x1b[2J')\n")
    out = io.StringIO()
    console = SafeConsole(file=out, width=100)  # the daemon's console, with its tick printer
    launcher = DriverLauncher(rota_env(home, ROTA_WORKERS="1"), home / "logs" / "drivers")
    start = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
    clock = FakeClock(start)
    sched = Scheduler(
        store, FlowFolder(bad.parent, parse_timeout=20), launcher, clock,
        SchedulerOptions(max_active_runs=4, exclusive=False),
        on_tick=lambda report: render.say_tick(console, report),
    )  # fmt: skip
    created: list[int] = []
    try:
        for second in range(0, 70, 10):  # a minute of the fake clock, a tick every 10 s
            clock.set(start + timedelta(seconds=second))
            if second == 30:  # a bad file changes while the daemon runs: reported again
                bad.write_text(BAD_AT_IMPORT.format(message="[/] again"))
            report = sched.tick()
            assert set(report.errors) == {str(bad), str(worse)}
            created.append(sum(r.flow == "often" for r in report.created))
        deadline = time.monotonic() + 120  # the clock stands still: ticks now only start runs
        while store.runs_in_states([RunState.QUEUED, RunState.RUNNING], "often"):
            assert time.monotonic() < deadline, "runs still not driven"
            launcher.wait_any(0.5)
            sched.tick()
    finally:
        sched.close()
    assert created == [1] * 7  # one run per interval, every tick, for the whole minute
    runs = store.list_runs("often")
    assert [r.state for r in runs] == [RunState.SUCCESS] * 7
    printed = out.getvalue()
    _clean(printed)
    lines = printed.splitlines()
    ours = f"bad flow file {bad}:3: import failed: ValueError: "
    assert [line for line in lines if line.startswith(ours)] == [
        ours + SHOWN,
        ours + "[/] again",
    ]
    assert sum(line.startswith(f"bad flow file {worse}") for line in lines) == 1
    assert any("SystemExit: \\x1b[2J" in line for line in lines)
    assert sum(line.startswith("created run ") for line in lines) == 7


def test_the_real_daemon_survives_a_hostile_bad_file(home: Path, write_flow: WriteFlow) -> None:
    write_flow("good.py", EVERY.format(seconds=1, name="fast"))
    bad = write_flow("bad.py", BAD_AT_IMPORT.format(message=HOSTILE))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "rota", "scheduler", "--flows", str(bad.parent), "--tick", "0.3"],
        env=rota_env(home, ROTA_WORKERS="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    from rota.store.sql import open_store

    try:
        with open_store(f"sqlite:///{home}/rota.db") as store:
            wait_for(lambda: len(_succeeded(store)) >= 3 or daemon.poll() is not None, 90)
            assert daemon.poll() is None, "the daemon died"
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
    _clean(out, err)
    assert err.count(f"bad flow file {bad}:3: import failed: ValueError: {SHOWN}\n") == 1


def _succeeded(store: SqlStore) -> list[str]:
    return [r.run_id for r in store.list_runs("fast") if r.state is RunState.SUCCESS]
