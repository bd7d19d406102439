"""Sensors' execution side: SensorOp.execute() called directly with hand-built contexts."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from fixtures_s3 import s3_bucket, s3_server  # noqa: F401
from rota import (
    DatasetSensor,
    FileSensor,
    Flow,
    FlowRunSensor,
    KeySensor,
    PythonSensor,
    Sensor,
    flow,
    sensor,
)
from rota.errors import DefinitionError, PolicyError, Reschedule, SensorTimeout, Skip, StoreError
from rota.model.builder import TaskNode
from rota.model.states import RunState
from rota.operators.base import ExecContext
from rota.operators.sensors import SensorOp, UpstreamRunFailed
from rota.store.base import NewTask, RunChange, RunTiming
from rota.store.sql import SqlStore, open_store

DAY = datetime(2026, 1, 1, tzinfo=UTC)
FAST = {"poke_interval": 0.05, "timeout": 5.0}


def op_of(make: Callable[[], TaskNode]) -> SensorOp:
    """The frozen operator of the sensor *make* creates inside a throw-away flow."""
    with Flow("f"):
        node = make()
    op = node.to_spec().op
    assert isinstance(op, SensorOp)
    return op


def context(**fields: Any) -> ExecContext:
    fields.setdefault("logical_date", DAY)
    fields.setdefault("data_interval_start", DAY)
    fields.setdefault("data_interval_end", DAY + timedelta(days=1))
    return ExecContext("r1", "f", "wait", 1, **fields)


def pokes_until(results: list[Any]) -> tuple[Callable[[], Any], list[float]]:
    """A poke function returning *results* in turn (the last one forever), and its call times."""
    calls: list[float] = []

    def poke() -> Any:
        calls.append(time.time())
        return results[min(len(calls), len(results)) - 1]

    return poke, calls


def later(seconds: float, action: Callable[[], object]) -> threading.Thread:
    """Run *action* in a thread after *seconds*."""

    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# --- the poke loop ---------------------------------------------------------------------------


def test_poke_mode_is_satisfied_after_several_pokes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = tmp_path / "done"
    op = op_of(lambda: FileSensor("wait", str(done), **FAST))
    maker = later(0.3, done.touch)
    assert op.execute(context(), (), {}) is None
    maker.join()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 3
    assert lines[0] == f"[rota] poke 1: waiting for {done}"
    assert lines[-1] == f"[rota] poke {len(lines)}: satisfied: {done}"


def test_poke_numbers_continue_from_earlier_dispatches(capsys: pytest.CaptureFixture[str]) -> None:
    op = op_of(lambda: PythonSensor("wait", lambda: True))
    op.execute(context(pokes=4, first_poke_at=time.time()), (), {})
    assert capsys.readouterr().out.startswith("[rota] poke 5: satisfied")


@pytest.mark.parametrize(("pokes", "wait"), [(0, 10.0), (1, 20.0), (2, 40.0), (3, 50.0)])
def test_reschedule_waits_the_backed_off_interval(pokes: int, wait: float) -> None:
    op = op_of(
        lambda: PythonSensor(
            "wait", lambda: False, mode="reschedule", poke_interval=10,
            exponential_backoff=True, max_wait=timedelta(seconds=50), timeout=3600,
        )
    )  # fmt: skip
    before = time.time()
    with pytest.raises(Reschedule) as caught:
        op.execute(context(pokes=pokes, first_poke_at=before), (), {})
    assert before + wait <= caught.value.at <= time.time() + wait


def test_reschedule_without_backoff_keeps_the_interval() -> None:
    op = op_of(lambda: PythonSensor("wait", lambda: None, mode="reschedule", poke_interval=7))
    before = time.time()
    with pytest.raises(Reschedule) as caught:
        op.execute(context(pokes=6, first_poke_at=before), (), {})
    assert before + 7 <= caught.value.at <= time.time() + 7


def test_reschedule_never_goes_past_the_deadline() -> None:
    op = op_of(
        lambda: PythonSensor("wait", lambda: 0, mode="reschedule", poke_interval=60, timeout=100)
    )
    first = time.time() - 95
    with pytest.raises(Reschedule) as caught:
        op.execute(context(first_poke_at=first, pokes=3), (), {})
    assert caught.value.at == first + 100


def test_poke_mode_times_out_with_a_last_poke_at_the_deadline() -> None:
    poke, calls = pokes_until([False])
    op = op_of(lambda: PythonSensor("wait", poke, poke_interval=0.15, timeout=0.4))
    first = time.time()
    with pytest.raises(SensorTimeout, match=r"'wait' not satisfied within 0\.4s of its first poke"):
        op.execute(context(first_poke_at=first), (), {})
    # pokes at about 0, 0.15 and 0.3 s, and a last one at the deadline (sleep() may wake a hair
    # early by the wall clock, which is what time.time() reads)
    assert len(calls) >= 3
    assert calls[-2] < first + 0.4 <= calls[-1] + 0.01


def test_soft_fail_skips_at_the_timeout() -> None:
    op = op_of(
        lambda: PythonSensor("wait", lambda: False, soft_fail=True, **FAST | {"timeout": 0.1})
    )
    with pytest.raises(Skip, match=r"sensor timed out after 0\.1s"):
        op.execute(context(), (), {})


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_timeout_counts_from_the_first_poke_of_earlier_dispatches(mode: str) -> None:
    poke, calls = pokes_until([False])
    op = op_of(lambda: PythonSensor("wait", poke, mode=mode, poke_interval=1, timeout=60))
    long_ago = time.time() - 61
    iso = datetime.fromtimestamp(long_ago, UTC).isoformat(timespec="seconds")
    with pytest.raises(SensorTimeout, match=re.escape(f"within 60s of its first poke at {iso}")):
        op.execute(context(first_poke_at=long_ago, pokes=30), (), {})
    assert len(calls) == 1


def test_an_exception_in_a_poke_fails_the_attempt() -> None:
    def poke() -> bool:
        raise ConnectionError("bucket unreachable")

    op = op_of(lambda: PythonSensor("wait", poke, **FAST))
    with pytest.raises(ConnectionError, match="bucket unreachable"):
        op.execute(context(), (), {})


def test_the_engine_sees_a_sensor_and_its_timeout() -> None:
    op = op_of(lambda: PythonSensor("wait", lambda: True))
    assert getattr(op, "is_sensor", False) is True
    assert op.sensor_timeout() == timedelta(days=7).total_seconds()
    assert op.policy.poke_interval == 60.0
    assert op.policy.mode == "poke"
    short = op_of(lambda: PythonSensor("wait", lambda: True, timeout=timedelta(minutes=2)))
    assert short.sensor_timeout() == 120.0


# --- built-in sensors --------------------------------------------------------------------------


def test_file_sensor_matches_a_glob(tmp_path: Path) -> None:
    op = op_of(lambda: FileSensor("wait", str(tmp_path / "*.csv"), mode="reschedule"))
    with pytest.raises(Reschedule):
        op.execute(context(), (), {})
    (tmp_path / "part-0.csv").touch()
    assert op.execute(context(), (), {}) is None


def test_file_sensor_renders_its_path(tmp_path: Path) -> None:
    (tmp_path / "2026-01-01").mkdir()
    (tmp_path / "2026-01-01" / "done").touch()
    op = op_of(lambda: FileSensor("wait", f"{tmp_path}/{{{{ ds }}}}/done", mode="reschedule"))
    assert op.execute(context(), (), {}) is None
    with pytest.raises(Reschedule):
        op.execute(context(logical_date=DAY + timedelta(days=1)), (), {})


def test_key_sensor_on_local_file_urls(tmp_path: Path) -> None:
    exact = op_of(lambda: KeySensor("wait", f"file://{tmp_path}/_SUCCESS", mode="reschedule"))
    pattern = op_of(lambda: KeySensor("wait", f"file://{tmp_path}/part-*", mode="reschedule"))
    for op in (exact, pattern):
        with pytest.raises(Reschedule):
            op.execute(context(), (), {})
    (tmp_path / "_SUCCESS").touch()
    (tmp_path / "part-0").touch()
    assert exact.execute(context(), (), {}) is None
    assert pattern.execute(context(), (), {}) is None


def test_key_sensor_waits_for_an_s3_key(s3_bucket: str) -> None:  # noqa: F811
    import s3fs

    from rota.artifacts.store import storage_options

    url = f"{s3_bucket}/2026-01-01/_SUCCESS"
    op = op_of(lambda: KeySensor("wait", url, poke_interval=0.2, timeout=30))
    fs = s3fs.S3FileSystem(**storage_options(url))
    fs.ls(s3_bucket)  # fill the listing cache: the sensor must not trust it
    writer = later(1.0, lambda: fs.pipe(url, b""))
    assert op.execute(context(), (), {}) is None
    writer.join()


def test_python_sensor_output_and_context() -> None:
    def ready(threshold: int, ctx: ExecContext) -> Any:
        return {"run": ctx.run_id, "n": threshold} if ctx.pokes >= 2 else False

    op = op_of(lambda: PythonSensor("wait", ready, args=(3,), mode="reschedule"))
    with pytest.raises(Reschedule):
        op.execute(context(pokes=1, first_poke_at=time.time()), (3,), {})
    out = op.execute(context(pokes=2, first_poke_at=time.time()), (3,), {})
    assert out == {"run": "r1", "n": 3}


def test_sensor_decorator_adds_a_python_sensor() -> None:
    @sensor(poke_interval=5, mode="reschedule")
    def ready(ctx: ExecContext) -> bool:
        return ctx.try_number > 0

    @flow
    def pipeline() -> None:
        ready()
        ready(task_id="again")

    dag = pipeline.build()
    op = dag.tasks["ready"].op
    assert isinstance(op, SensorOp)
    assert (op.policy.poke_interval, op.policy.mode) == (5.0, "reschedule")
    assert "again" in dag.tasks
    assert op.execute(context(), (), {}) is None
    assert ready(context()) is True  # outside a flow: the plain function


class MarkerSensor(Sensor):
    """A user-defined sensor: its attributes are set after Sensor.__init__."""

    def __init__(self, task_id: str, folder: str, **options: Any) -> None:
        super().__init__(task_id, **options)
        self.folder = folder

    def poke(self, ctx: ExecContext) -> Any:
        found = sorted(p.name for p in Path(self.folder).glob("*.marker"))
        return found or False

    def waiting_for(self, ctx: ExecContext) -> str:
        return f"markers in {self.folder} for {self.id}"


def test_a_sensor_subclass_pickles_without_its_flow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    op = op_of(lambda: MarkerSensor("wait", str(tmp_path), mode="reschedule"))
    copy = cloudpickle.loads(cloudpickle.dumps(op))
    with pytest.raises(Reschedule):
        copy.execute(context(), (), {})
    assert f"waiting for markers in {tmp_path} for wait" in capsys.readouterr().out
    (tmp_path / "a.marker").touch()
    assert copy.execute(context(), (), {}) == ["a.marker"]
    assert copy.code_hash() == op.code_hash()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"poke_interval": 0}, "poke_interval must be positive"),
        ({"poke_interval": -1.0}, "poke_interval must be positive"),
        ({"timeout": timedelta(0)}, "timeout must be positive"),
        ({"timeout": "1h"}, "timeout must be seconds or a timedelta"),
        ({"mode": "sleep"}, "mode must be 'poke' or 'reschedule'"),
        ({"max_wait": 0}, "max_wait must be positive"),
        ({"soft_fail": 1}, "soft_fail must be True or False"),
    ],
)
def test_invalid_options_name_the_task(options: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=f"task 'wait': {message}"), Flow("f"):
        FileSensor("wait", "x", **options)


def test_invalid_definitions() -> None:
    with Flow("f"):
        with pytest.raises(DefinitionError, match="unknown sensor option 'interval'"):
            FileSensor("a", "x", interval=3)
        with pytest.raises(DefinitionError, match="unknown run state 'done'"):
            FlowRunSensor("b", "other", states=("done",))
        with pytest.raises(DefinitionError, match="path must be a non-empty string"):
            FileSensor("c", "")
        with pytest.raises(DefinitionError, match="task 'g' path: template error"):
            FileSensor("g", "data/{{ ds }/done")
        with pytest.raises(DefinitionError, match="is not callable"):
            PythonSensor("d", "nope")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="unknown sensor option 'every'"):
        sensor(every=3)
    with pytest.raises(DefinitionError, match="outside a flow"):
        FileSensor("e", "x")


# --- sensors on the metadata store -------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    with open_store(f"sqlite:///{tmp_path}/rota.db") as opened:
        yield opened


def add_run(store: SqlStore, flow_name: str, day: datetime, *states: RunState) -> str:
    """A run of *flow_name* for *day*, moved through *states* after ``queued``."""
    run_id = f"{flow_name}-{day:%Y%m%d}"
    timing = RunTiming(day, day, day + timedelta(days=1))
    store.create_run(run_id, flow_name, {}, [NewTask("t", "python", "h")], day, timing=timing)
    old = RunState.QUEUED
    for new in states:
        store.apply([], [RunChange(run_id, old, new, day)], at=day)
        old = new
    return run_id


def in_store(store: SqlStore, **fields: Any) -> ExecContext:
    return context(store=store, **fields)  # what the engine lends the sensors it pokes


def test_flow_run_sensor_waits_for_a_successful_run(store: SqlStore) -> None:
    op = op_of(lambda: FlowRunSensor("wait", "upstream", mode="reschedule"))
    with pytest.raises(Reschedule):
        op.execute(in_store(store), (), {})
    run_id = add_run(store, "upstream", DAY, RunState.RUNNING)
    with pytest.raises(Reschedule):
        op.execute(in_store(store), (), {})
    store.apply([], [RunChange(run_id, RunState.RUNNING, RunState.SUCCESS, DAY)], at=DAY)
    assert op.execute(in_store(store), (), {}) is None


def test_flow_run_sensor_looks_back_by_execution_delta(store: SqlStore) -> None:
    add_run(store, "upstream", DAY - timedelta(hours=1), RunState.RUNNING, RunState.SUCCESS)
    same_day = op_of(lambda: FlowRunSensor("wait", "upstream", mode="reschedule"))
    hour_ago = op_of(lambda: FlowRunSensor("wait", "upstream", execution_delta=timedelta(hours=1)))
    with pytest.raises(Reschedule):
        same_day.execute(in_store(store), (), {})
    assert hour_ago.execute(in_store(store), (), {}) is None


def test_flow_run_sensor_fails_fast_on_a_failed_run(store: SqlStore) -> None:
    add_run(store, "upstream", DAY, RunState.RUNNING, RunState.FAILED)
    op = op_of(lambda: FlowRunSensor("wait", "upstream", mode="reschedule"))
    with pytest.raises(UpstreamRunFailed, match="ended failed, not success"):
        op.execute(in_store(store), (), {})
    either = op_of(lambda: FlowRunSensor("wait", "upstream", states=("success", "failed")))
    assert either.execute(in_store(store), (), {}) is None


def test_store_sensors_poked_anywhere_but_the_engine_fail_naming_why() -> None:
    for make in (
        lambda: FlowRunSensor("wait", "upstream"),
        lambda: DatasetSensor("wait", "s3://lake/x.parquet"),
    ):
        op = op_of(make)
        assert op.reads_store  # the runner hands it to the engine's own sensor threads
        with pytest.raises(StoreError, match="only the engine has"):
            op.execute(context(), (), {})


def test_dataset_sensor_waits_for_a_version_in_the_interval(store: SqlStore) -> None:
    uri = "s3://lake/features.parquet"
    op = op_of(lambda: DatasetSensor("wait", uri, mode="reschedule"))
    store.add_dataset_version(uri, "h0", "old", "make", DAY - timedelta(hours=1))
    with pytest.raises(Reschedule):
        op.execute(in_store(store), (), {})
    store.add_dataset_version(uri, "h1", "new", "make", DAY + timedelta(hours=1))
    assert op.execute(in_store(store), (), {}) is None
    tomorrow = DAY + timedelta(days=1)
    with pytest.raises(Reschedule):
        op.execute(in_store(store, data_interval_start=tomorrow), (), {})
