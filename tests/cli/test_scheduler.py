"""The scheduler daemon: due runs on a fake clock, idempotent creation, a SIGKILL and restart,
one scheduler per SQLite store, bad flow files reported by name, and `rota trigger`."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

from clihelp import RotaCli, rota_env, wait_for

from rota.engine.flowdir import FlowFolder
from rota.engine.launcher import DriverLauncher
from rota.engine.scheduler import Scheduler, SchedulerOptions
from rota.model.states import RunState, TaskState
from rota.store.sql import SqlStore, open_store
from rota.testing import FakeClock

WriteFlow = Callable[[str, str], Path]

DAILY = """
    from datetime import datetime
    from pathlib import Path
    from rota import flow, task

    @task
    def mark(day: str, ctx) -> str:
        out = Path(__file__).parent.parent / "marks"
        out.mkdir(exist_ok=True)
        with (out / "{name}.txt").open("a") as f:
            end = ctx.data_interval_end.isoformat()
            f.write(f"{{day}} {{ctx.logical_date.isoformat()}} {{end}}\\n")
        return day

    @flow(schedule="@daily", timezone="Europe/Berlin", start_date=datetime(2026, 3, 1),
          catchup={catchup}, max_active_runs={max_active})
    def {name}(day: str = "x"):
        mark(day)
"""


MANUAL = """
from rota import flow, task

@task
def step() -> int:
    return {i}

@flow
def manual_{i}():
    step()
"""

TWIN = """
from rota import flow, task

@task
def hello() -> str:
    return "hi"

@flow(name="twin", schedule="@daily")
def {fn}():
    hello()
"""


def _scheduler(store: SqlStore, flows: Path, home: Path, clock: FakeClock) -> Scheduler:
    launcher = DriverLauncher(rota_env(home, ROTA_WORKERS="1"), home / "logs" / "drivers")
    options = SchedulerOptions(max_active_runs=4, exclusive=False)
    return Scheduler(store, FlowFolder(flows, parse_timeout=20), launcher, clock, options)


def _drain(sched: Scheduler, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while sched.launcher.active() and time.monotonic() < deadline:
        sched.launcher.wait_any(0.5)
    assert not sched.launcher.active(), "drivers still running"


def test_due_runs_on_a_fake_clock_catchup_then_one_per_day_and_never_twice(
    store: SqlStore, home: Path, write_flow: WriteFlow
) -> None:
    write_flow("a.py", DAILY.format(name="caught", catchup=True, max_active=16))
    write_flow("b.py", DAILY.format(name="latest", catchup=False, max_active=16))
    flows = home.parent / "flows"
    # 2026-03-05 00:30 in Berlin (UTC+1): four days are complete since 1 March
    clock = FakeClock(datetime(2026, 3, 4, 23, 30, tzinfo=UTC))
    sched = _scheduler(store, flows, home, clock)
    try:
        first = sched.tick()
        made = Counter(r.flow for r in first.created)
        assert made == {"caught": 4, "latest": 1}
        dates = sorted(r.logical_date for r in first.created if r.flow == "caught")
        berlin = [d.astimezone(_berlin()).date() for d in dates if d]
        assert [d.day for d in berlin] == [1, 2, 3, 4]
        _drain(sched)
        sched.tick()  # the same tick again (as after a crash): nothing new
        _drain(sched)
        restarted = _scheduler(store, flows, home, clock)  # a new process, same store
        assert restarted.tick().created == []
        clock.advance(timedelta(days=1))
        assert Counter(r.flow for r in restarted.tick().created) == {"caught": 1, "latest": 1}
        _drain(restarted)
    finally:
        sched.close()
    runs = store.list_runs()
    assert all(r.state is RunState.SUCCESS for r in runs), [(r.run_id, r.state) for r in runs]
    marks = (home.parent / "marks" / "caught.txt").read_text().splitlines()
    seen = sorted(tuple(line.split()[1:]) for line in marks)
    expected = sorted(
        (r.logical_date.isoformat(), r.data_interval_end.isoformat())
        for r in runs
        if r.flow == "caught" and r.logical_date and r.data_interval_end
    )
    assert seen == expected, "tasks see their run's logical date and data interval"
    keys = Counter((r.flow, r.logical_date) for r in runs)
    assert max(keys.values()) == 1 and len(runs) == 7
    assert all(r.run_type == "scheduled" for r in runs)


def _berlin() -> ZoneInfo:
    return ZoneInfo("Europe/Berlin")


def test_max_active_runs_limits_created_and_running_runs(
    store: SqlStore, home: Path, write_flow: WriteFlow
) -> None:
    write_flow("a.py", DAILY.format(name="one", catchup=True, max_active=1))
    clock = FakeClock(datetime(2026, 3, 6, 12, 0, tzinfo=UTC))
    sched = _scheduler(store, home.parent / "flows", home, clock)
    try:
        for _ in range(5):
            report = sched.tick()
            assert len(report.created) <= 1
            active = store.runs_in_states([RunState.QUEUED, RunState.RUNNING], "one")
            assert len(active) <= 1
            _drain(sched)
    finally:
        sched.close()
    assert [r.state for r in store.runs_for_dates("one")] == [RunState.SUCCESS] * 5


def _start_daemon(home: Path, flows: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rota", "scheduler", "--flows", str(flows), "--tick", "0.3",
         *extra],
        env=rota_env(home, ROTA_WORKERS="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def test_sigkill_and_restart_make_no_duplicate_runs_and_resume_cut_runs(
    store: SqlStore, home: Path, write_flow: WriteFlow
) -> None:
    go = home.parent / "go"  # the tasks wait for it: the kill finds runs in the middle
    write_flow(
        "every.py",
        f"""
        import time
        from datetime import timedelta
        from pathlib import Path
        from rota import flow, task

        @task
        def slow() -> None:
            while not Path({str(go)!r}).exists():
                time.sleep(0.05)

        @flow(schedule=timedelta(seconds=2), catchup=True, max_active_runs=3)
        def every():
            slow()
        """,
    )
    flows = home.parent / "flows"
    daemon = _start_daemon(home, flows)
    try:
        wait_for(lambda: len(store.list_runs("every")) >= 3, 60)
        wait_for(lambda: bool(store.runs_in_states([RunState.RUNNING], "every")), 30)
        wait_for(lambda: _a_task_is_running(store, "every"), 30)
        daemon.send_signal(signal.SIGKILL)
        daemon.communicate(timeout=10)
        # the drivers notice their lifeline closed and interrupt their runs
        wait_for(lambda: not store.runs_in_states([RunState.RUNNING], "every"), 30)
        cut = {r.run_id for r in store.runs_in_states([RunState.INTERRUPTED], "every")}
        assert cut
        before = {r.run_id for r in store.list_runs("every")}
        go.touch()
        daemon = _start_daemon(home, flows)
        said = _Drained(daemon)
        wait_for(
            lambda: all(store.get_run(r).state is RunState.SUCCESS for r in cut),
            60,
        )
        # the cut runs may hold every active slot (max_active_runs=3) until the last ends: wait
        # for the restarted scheduler's own next run, and for its tick to have said so (a tick
        # prints after it commits: stopped in between, the line would never come)
        wait_for(lambda: bool({r.run_id for r in store.list_runs("every")} - before), 60)
        wait_for(lambda: "created run" in said.err(), 60)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    err = said.err(closed=True)
    runs = store.list_runs("every")
    dates = Counter(r.logical_date for r in runs)
    assert max(dates.values()) == 1, dates
    gaps = sorted(d for d in dates if d is not None)
    assert all(b - a == timedelta(seconds=2) for a, b in itertools.pairwise(gaps))
    assert "created run" in err


class _Drained:
    """Reads a process's stdout and stderr as it writes them (so a test can wait for a line)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc
        self._parts: dict[str, list[str]] = {"out": [], "err": []}
        self._threads = [
            threading.Thread(target=self._read, args=(stream, self._parts[name]), daemon=True)
            for name, stream in (("out", proc.stdout), ("err", proc.stderr))
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream: IO[str] | None, into: list[str]) -> None:
        for line in stream if stream is not None else ():
            into.append(line)

    def err(self, *, closed: bool = False) -> str:
        """What the process wrote to stderr so far (all of it once it exited, with *closed*)."""
        if closed:
            for thread in self._threads:
                thread.join(timeout=30)
            for stream in (self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    stream.close()
        return "".join(self._parts["err"])


def _a_task_is_running(store: SqlStore, flow: str) -> bool:
    """Whether a run of *flow* has an attempt that has started and not ended."""
    return any(
        a.state is TaskState.RUNNING and a.started_at is not None
        for run in store.runs_in_states([RunState.RUNNING], flow)
        for a in store.attempts(run.run_id)
    )


def test_a_second_scheduler_on_one_sqlite_store_refuses_and_names_the_holder(
    rota: RotaCli, home: Path, write_flow: WriteFlow
) -> None:
    write_flow("a.py", DAILY.format(name="d", catchup=False, max_active=1))
    flows = home.parent / "flows"
    first = _start_daemon(home, flows)
    try:
        with open_store(f"sqlite:///{home}/rota.db") as store:
            wait_for(lambda: bool(store.list_runs("d")), 60)
        second = rota("scheduler", "--flows", str(flows), "--once")
        assert second.code == 2
        assert "another scheduler is running" in second.err
        assert str(first.pid) in second.err
        assert len(second.err.strip().splitlines()) == 1
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert first.returncode in (0, 130)


BAD_FILES = {
    "bad_syntax.py": ("def broken(:\n", "syntax error"),
    "bad_import.py": ("import rota_no_such_module_xyz\n", "ModuleNotFoundError"),
    "bad_raise.py": ("raise RuntimeError('no config')\n", "no config"),
    "bad_hang.py": ("while True:\n    pass\n", "timed out after 2s"),
    "bad_cycle.py": (
        "from rota import Flow, ShellTask\n\nwith Flow('cyclic') as f:\n"
        "    a = ShellTask('a', 'true')\n    b = ShellTask('b', 'true')\n    a >> b >> a\n",
        "cycle",
    ),
    "bad_twin_a.py": (TWIN.format(fn="one"), "also defined in"),
    "bad_twin_b.py": (TWIN.format(fn="two"), "also defined in"),
    "bad_cron.py": (
        "from rota import flow\n\n@flow(schedule='61 * * * *')\ndef c():\n    pass\n",
        "cron",
    ),
    "bad_option.py": (
        "from rota import flow\n\n@flow(nope=1)\ndef o():\n    pass\n",
        "unknown option 'nope'",
    ),
    "bad_exit.py": ("import sys\nsys.exit(3)\n", "SystemExit"),
}


def test_the_daemon_loads_50_good_files_beside_10_bad_ones_naming_each(
    rota: RotaCli, home: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    write_flow("good.py", DAILY.format(name="good", catchup=False, max_active=1))
    for i in range(49):
        write_flow(f"manual_{i:02d}.py", MANUAL.format(i=i))
    for name, (source, _) in BAD_FILES.items():
        write_flow(name, source)
    flows = home.parent / "flows"
    result = rota(
        "scheduler", "--flows", str(flows), "--once", "--parse-timeout", "2",
        "--workers-per-run", "1",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "loaded 50 flow(s); 10 bad file(s)" in result.err
    for name, (_, why) in BAD_FILES.items():
        lines = [
            ln
            for ln in result.err.splitlines()
            if ln.startswith("bad flow file ") and ln.split()[3].split(":")[0].endswith(name)
        ]
        assert len(lines) == 1 and why in lines[0], "\n".join(lines)
    assert "twin" not in {r.flow for r in store.list_runs()}, "neither twin wins"
    (run,) = store.list_runs()
    assert (run.flow, run.state) == ("good", RunState.SUCCESS)


def test_trigger_queues_a_run_the_scheduler_drives_with_its_params(
    rota: RotaCli, home: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = write_flow("a.py", DAILY.format(name="manual", catchup=False, max_active=4))
    queued = rota("trigger", "manual", "-p", "day=2026-05-05", "--flows", str(path.parent))
    assert queued.code == 0, queued.err
    (run,) = [r for r in store.list_runs("manual") if r.run_type == "triggered"]
    assert run.state is RunState.QUEUED and run.params == {"day": "2026-05-05"}
    bad = rota("trigger", "nosuch", "--flows", str(path.parent))
    assert bad.code == 2 and "no file or flow named 'nosuch'" in bad.err
    done = rota("scheduler", "--flows", str(path.parent), "--once")
    assert done.code == 0, done.err
    assert store.get_run(run.run_id).state is RunState.SUCCESS
    marks = (home.parent / "marks" / "manual.txt").read_text().split()
    assert "2026-05-05" in marks


def test_a_flow_scheduled_on_a_dataset_runs_once_per_new_version(
    store: SqlStore, home: Path, write_flow: WriteFlow
) -> None:
    write_flow(
        "pipeline.py",
        """
        from rota import Dataset, flow, task

        FEATURES = Dataset("file:///data/features.parquet")

        @task(outlets=[FEATURES])
        def build() -> int:
            return 1

        @flow(schedule="@daily")
        def producer():
            build()

        @task
        def train() -> int:
            return 2

        @flow(schedule=[FEATURES])
        def consumer():
            train()
        """,
    )
    clock = FakeClock(datetime(2026, 3, 4, 12, 0, tzinfo=UTC))
    sched = _scheduler(store, home.parent / "flows", home, clock)
    try:
        assert [r.flow for r in sched.tick().created] == ["producer"]
        _drain(sched)
        made = sched.tick().created
        assert [(r.flow, r.run_type) for r in made] == [("consumer", "dataset")]
        _drain(sched)
        assert sched.tick().created == []  # no new version since the consumer's run
        clock.advance(timedelta(days=1))
        assert [r.flow for r in sched.tick().created] == ["producer"]
        _drain(sched)
        assert [r.flow for r in sched.tick().created] == ["consumer"]
        _drain(sched)
    finally:
        sched.close()
    assert all(r.state is RunState.SUCCESS for r in store.list_runs())


def test_two_schedulers_on_postgresql_ticking_at_once_make_one_run_per_interval(
    postgres_url: str, home: Path, write_flow: WriteFlow
) -> None:
    write_flow("a.py", DAILY.format(name="shared", catchup=True, max_active=16))
    flows = home.parent / "flows"
    env = {**rota_env(home, ROTA_WORKERS="1"), "ROTA_DATABASE_URL": postgres_url}
    clock = FakeClock(datetime(2026, 3, 8, 12, 0, tzinfo=UTC))
    with open_store(postgres_url) as first_store, open_store(postgres_url) as second_store:
        scheds = [
            Scheduler(
                s,
                FlowFolder(flows),
                DriverLauncher(env, home / "logs" / "drivers"),
                clock,
                SchedulerOptions(max_active_runs=4, exclusive=False),
            )
            for s in (first_store, second_store)
        ]
        barrier = threading.Barrier(2)
        reports: list[int] = []

        def tick(sched: Scheduler) -> None:
            sched.folder.scan()  # parse first, so that both reach the store together
            barrier.wait()
            reports.append(len(sched.tick().created))

        threads = [threading.Thread(target=tick, args=(s,)) for s in scheds]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        try:
            for _ in range(4):  # both keep ticking: each drives what is left, never a run twice
                for sched in scheds:
                    _drain(sched)
                    assert sched.tick().created == []
        finally:
            for sched in scheds:
                sched.close()
        runs = first_store.runs_for_dates("shared")
        attempts = [first_store.attempts(r.run_id) for r in runs]
    assert sum(reports) == 7 == len(runs), reports  # 1-7 March, each made by one scheduler
    assert len({r.logical_date for r in runs}) == 7
    assert all(r.state is RunState.SUCCESS for r in runs), [r.state for r in runs]
    assert all(len(a) == 1 for a in attempts), "no run's task ran twice"
