"""``rota runs show`` splits a rescheduled sensor's time into waits that are never negative.

A sensor in ``reschedule`` mode is one attempt dispatched again for each poke. Its start is its
first poke's; its queue and dispatch times were taken from its last poke, so the dispatch wait
(dispatched -> started) came out negative. Now every time of the attempt but its end is its first
poke's, and its execution spans its pokes (the time between them too: the sensor was sensing).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from clihelp import RotaCli

from rota.engine.report import summarize
from rota.model.states import TaskState
from rota.store.sql import SqlStore

WriteFlow = Callable[[str, str], Path]

FLOW = """
import os
from pathlib import Path

from rota import Flow, PythonSensor, PythonTask

COUNT = Path(os.environ["POKE_COUNT"])


def third_time_lucky() -> bool:
    n = int(COUNT.read_text()) + 1 if COUNT.exists() else 1
    COUNT.write_text(str(n))
    return n >= 3


def after() -> int:
    return 1


with Flow("sensed") as f:
    wait = PythonSensor("wait", third_time_lucky, mode="reschedule", poke_interval=0.2)
    wait >> PythonTask("after", after)
"""


@pytest.mark.parametrize("executor", ["local", "threads", "inprocess"])
def test_a_rescheduled_sensor_shows_no_negative_wait(
    write_flow: WriteFlow, tmp_path: Path, store: SqlStore, rota: RotaCli, executor: str
) -> None:
    path = write_flow("sensed.py", FLOW)
    env = {"POKE_COUNT": str(tmp_path / "count")}
    ran = rota("run", str(path), "--executor", executor, "--json", env=env)
    assert ran.code == 0, ran
    run_id = ran.json()["run_id"]
    (rec,) = [a for a in store.attempts(run_id) if a.task_id == "wait"]
    assert rec.state is TaskState.SUCCESS and rec.pokes == 2  # three pokes: one attempt
    times = [rec.queued_at, rec.dispatched_at, rec.started_at, rec.finished_at, rec.committed_at]
    assert None not in times
    assert times == sorted(times)  # type: ignore[type-var]
    assert rec.started_at == rec.first_poke_at
    waits = summarize(store, run_id).tasks["wait"].waits()  # what runs show prints
    assert all(w is not None and w >= 0 for w in waits.values()), waits
    table = rota("runs", "show", run_id, "--timing")
    assert table.code == 0, table
    (row,) = [line for line in table.out.splitlines() if re.match(r"\W*wait\b", line)]
    assert re.findall(r"\d+\.\d{3}s", row) and not re.search(r"-\d", row), row
