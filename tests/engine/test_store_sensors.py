"""Sensors that read the metadata store are poked by the engine, under every executor.

Workers never open the store (DESIGN.md): a ``DatasetSensor`` or ``FlowRunSensor`` attempt runs
in a thread of the engine's process, which lends it the store, while the flow's other tasks run
on the executor's workers (a process pool, a Dask cluster).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cloudpickle
import pytest

from fixtures_dask import dask_cluster  # noqa: F401
from fixtures_s3 import s3_server  # noqa: F401
from rota import DatasetSensor, Flow, FlowRunSensor, PythonTask
from rota.engine.runner import FlowRef, Runner
from rota.executors.base import Executor
from rota.executors.pool import LocalPoolExecutor
from rota.executors.threads import ThreadExecutor
from rota.model.schedule import SystemClock
from rota.model.states import RunState, TaskState
from rota.store.base import NewTask, RunChange, RunTiming
from rota.store.sql import SqlStore, open_store

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Dask workers cannot import us

URI = "s3://lake/features.parquet"
DAY = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(params=["local", "threads", "dask"])
def executor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Executor]:
    ex: Executor
    if request.param == "local":
        ex = LocalPoolExecutor(2, str(tmp_path / "logs"))
    elif request.param == "threads":
        ex = ThreadExecutor(2)
    else:
        from rota.executors.dask import DaskExecutor

        ex = DaskExecutor(request.getfixturevalue("dask_cluster").address)
    yield ex
    ex.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    with open_store(f"sqlite:///{tmp_path}/rota.db") as opened:
        yield opened


def where() -> str:
    return f"{os.getpid()}"


def test_store_sensors_are_poked_in_the_engine_and_the_rest_on_workers(
    executor: Executor, store: SqlStore, tmp_path: Path
) -> None:
    timing = RunTiming(DAY, DAY, DAY + timedelta(days=1))
    store.create_run("up-1", "upstream", {}, [NewTask("t", "python", "h")], DAY, timing=timing)
    for old, new in ((RunState.QUEUED, RunState.RUNNING), (RunState.RUNNING, RunState.SUCCESS)):
        store.apply([], [RunChange("up-1", old, new, DAY)], at=DAY)
    store.add_dataset_version(URI, "h1", "up-1", "t", DAY + timedelta(hours=1))
    with Flow("consumer") as f:
        data = DatasetSensor("data", URI, poke_interval=0.1, mode="reschedule")
        run = FlowRunSensor("run", "upstream", poke_interval=0.1, execution_delta=timedelta(0))
        [data, run] >> PythonTask("work", where)
    dag = f.build()
    runner = Runner(store, executor, home=tmp_path, clock=SystemClock())
    record = runner.create(dag, FlowRef("consumer"), timing=timing)  # the upstream's date
    summary = runner.drive(record.run_id, dag, FlowRef("consumer"))
    assert summary.state is RunState.SUCCESS, summary
    attempts = {a.task_id: a for a in store.attempts(record.run_id)}
    engine = f"engine:{os.getpid()}"
    for sensor in ("data", "run"):
        assert attempts[sensor].state is TaskState.SUCCESS
        assert attempts[sensor].worker == engine, attempts[sensor].worker
        log = Path(str(attempts[sensor].log_path)).read_text()
        assert "satisfied" in log
    work = attempts["work"]
    assert work.state is TaskState.SUCCESS
    assert work.worker != engine  # ordinary tasks still run on the executor's workers
