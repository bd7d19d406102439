"""Sensors on the metadata store: another flow's run (:class:`FlowRunSensor`), a new
version of a dataset (:class:`DatasetSensor`).

Their pokers say ``reads_store``: the engine pokes them in its own process and lends them the
store through ``ctx.store`` (a read-only view), under every executor. No worker ever opens the
store (DESIGN.md: executors never touch it), so these sensors work on a Dask cluster whose
workers cannot reach the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

from rota.errors import DefinitionError, RotaError, StoreError
from rota.model.datasets import Dataset
from rota.model.states import RunState
from rota.operators.base import ExecContext, StoreReader, digest
from rota.operators.sensors.node import _BuiltIn, _TextPoker

_ENDED: Final = frozenset({RunState.SUCCESS, RunState.FAILED})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class UpstreamRunFailed(Exception):
    """Raised by a FlowRunSensor when the run it waits for ended in a state it does not accept."""


def _store(ctx: ExecContext) -> StoreReader:
    """The metadata store the engine lent *ctx*.

    Raises:
        StoreError: the attempt runs where there is no store (a worker): such sensors are poked
            by the engine, which gives them the store.
    """
    if ctx.store is None:
        raise StoreError(
            f"task {ctx.task_id!r}: the sensor reads the metadata store, which only the engine "
            "has (it pokes such sensors itself); this attempt was given none"
        )
    return ctx.store


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class FlowRunPoker:
    """Satisfied when *flow* has a run for this run's logical date - *delta* in one of *states*."""

    flow: str
    states: tuple[str, ...]
    delta: timedelta
    reads_store: ClassVar[bool] = True

    def _date(self, ctx: ExecContext) -> datetime:
        if ctx.logical_date is None:
            raise RotaError(f"task {ctx.task_id!r}: the run has no logical date to wait for")
        return _aware(ctx.logical_date) - self.delta

    def poke(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        """Whether the run is in an accepted state.

        Raises:
            UpstreamRunFailed: the run ended in another state (and ``failed`` is not accepted).
        """
        when = self._date(ctx)
        runs = _store(ctx).runs_for_dates(self.flow, when, when)
        if any(r.state.value in self.states for r in runs):
            return True
        ended = [r for r in runs if r.state in _ENDED]
        if ended and "failed" not in self.states:
            raise UpstreamRunFailed(
                f"run {ended[0].run_id} of flow {self.flow!r} for {when.isoformat()} ended "
                f"{ended[0].state.value}, not {' or '.join(self.states)}"
            )
        return False

    def target(self, ctx: ExecContext) -> str:
        wanted = " or ".join(self.states)
        return f"a {wanted} run of flow {self.flow!r} for {self._date(ctx).isoformat()}"

    def describe(self) -> str:
        return f"flow {self.flow} ({', '.join(self.states)})"

    def code_hash(self) -> str:
        return digest("flow_run", self.flow, repr(self.states), repr(self.delta))


class FlowRunSensor(_BuiltIn):
    """Waits for a run of another flow for this run's logical date minus *execution_delta*.

    Raises:
        DefinitionError: *flow* is empty, a state is not a run state, or the delta is not a
            timedelta.
    """

    def __init__(
        self,
        task_id: str,
        flow: str,
        *,
        states: Iterable[str] = ("success",),
        execution_delta: timedelta = timedelta(0),
        **sensor_options: Any,
    ) -> None:
        if not isinstance(flow, str) or not flow.strip():
            raise DefinitionError(f"task {task_id!r}: flow must be a flow name")
        wanted = (states,) if isinstance(states, str) else tuple(states)
        known = {s.value for s in RunState}
        for state in wanted:
            if state not in known:
                choices = ", ".join(sorted(known))
                raise DefinitionError(f"task {task_id!r}: unknown run state {state!r} ({choices})")
        if not wanted:
            raise DefinitionError(f"task {task_id!r}: states must name at least one run state")
        if not isinstance(execution_delta, timedelta):
            raise DefinitionError(f"task {task_id!r}: execution_delta must be a timedelta")
        poker = FlowRunPoker(flow, tuple(str(s) for s in wanted), execution_delta)
        super().__init__(task_id, poker, sensor_options)


@dataclass(frozen=True, slots=True)
class DatasetPoker(_TextPoker):
    """Satisfied when the dataset has a version newer than the run's data interval start."""

    what: ClassVar[str] = "dataset"
    reads_store: ClassVar[bool] = True

    def poke(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        found = _store(ctx).new_dataset_versions([self.text], _since(ctx))
        return found.get(self.text, 0) > 0

    def target(self, ctx: ExecContext) -> str:
        return f"a version of dataset {self.text} after {_since(ctx).isoformat()}"


def _since(ctx: ExecContext) -> datetime:
    return _aware(ctx.data_interval_start or ctx.logical_date or _EPOCH)


class DatasetSensor(_BuiltIn):
    """Waits for a new version of *dataset* since the run's data interval start.

    Raises:
        DefinitionError: *dataset* is neither a Dataset nor a URI.
    """

    def __init__(self, task_id: str, dataset: Dataset | str, **sensor_options: Any) -> None:
        found = Dataset(dataset) if isinstance(dataset, str) else dataset
        if not isinstance(found, Dataset):
            raise DefinitionError(f"task {task_id!r}: dataset must be a Dataset or a URI")
        super().__init__(task_id, DatasetPoker(found.uri), sensor_options)


__all__ = [
    "DatasetPoker",
    "DatasetSensor",
    "FlowRunPoker",
    "FlowRunSensor",
    "UpstreamRunFailed",
]
