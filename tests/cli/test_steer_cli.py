"""rota pause / unpause / cancel: a paused flow gets no scheduled runs; bad input is one line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clihelp import RotaCli, rota_env

from rota.engine.flowdir import FlowFolder
from rota.engine.launcher import DriverLauncher
from rota.engine.scheduler import Scheduler, SchedulerOptions
from rota.store.sql import SqlStore
from rota.testing import FakeClock

DAILY = """
from rota import flow, task

@task
def hello() -> str:
    return "hi"

@flow(schedule="@daily")
def daily():
    hello()
"""


def test_a_paused_flow_gets_no_scheduled_run_until_unpaused(
    rota: RotaCli, store: SqlStore, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    write_flow("daily.py", DAILY)
    flows = home.parent / "flows"
    done = rota("pause", "daily")
    assert done.code == 0 and "flow daily was paused" in done.out
    assert "already" in rota("pause", "daily").out
    clock = FakeClock(datetime(2026, 3, 4, 12, 0, tzinfo=UTC))
    launcher = DriverLauncher(rota_env(home, ROTA_WORKERS="1"), home / "logs" / "drivers")
    options = SchedulerOptions(max_active_runs=2, exclusive=False)
    sched = Scheduler(store, FlowFolder(flows, parse_timeout=20), launcher, clock, options)
    try:
        assert sched.tick().created == []
        clock.advance(timedelta(days=1))
        assert sched.tick().created == []
        assert store.list_runs() == []
        assert rota("unpause", "daily").code == 0
        made = sched.tick().created
        assert [r.flow for r in made] == ["daily"]
        graph = store.run_graph(made[0].run_id)  # the scheduler's runs record their graph too
        assert graph == [("hello", ())]
    finally:
        sched.close()


def test_bad_input_to_the_steering_commands_is_one_line_and_exit_2(rota: RotaCli) -> None:
    for args, words in (
        (("pause", "../etc"), "flow name"),
        (("cancel", "no-such-run"), "no run"),
    ):
        done = rota(*args)
        assert done.code == 2, done
        assert words in done.err and "Traceback" not in done.err
        assert len(done.err.strip().splitlines()) == 1
