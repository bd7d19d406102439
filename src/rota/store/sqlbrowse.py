"""The SQL store's methods for looking at and steering runs (the statements are in
:mod:`rota.store.browse`); :class:`~rota.store.sql.SqlStore` inherits them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine

from rota.model.states import TaskState
from rota.store import browse, digest
from rota.store.base import RunRecord
from rota.store.browse import Graph, RunQuery
from rota.store.rows import OnCorrupt


@dataclass(frozen=True, slots=True)
class Counts:
    """What ``/metrics`` reports from the store."""

    runs: Mapping[str, int]
    tasks: Mapping[str, int]
    durations: Mapping[float, int]
    """Attempts that took at most each bound, in seconds (cumulative)."""
    finished: int
    seconds: float
    queued: int
    locks: Mapping[str, datetime]


class BrowseMethods:
    """Reads for the UI and the writes of pause and cancel; see :mod:`rota.store.browse`."""

    _engine: Engine

    def _errors(self, doing: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def page_runs(self, query: RunQuery, on_corrupt: OnCorrupt | None = None) -> list[RunRecord]:
        """A page of runs, newest first (see :class:`~rota.store.browse.RunQuery`).

        Raises:
            BadCursor: the query's cursor is not one of ours.
        """
        with self._errors("list runs"), self._engine.connect() as conn:
            return browse.page_runs(conn, query, on_corrupt)

    def run_graph(self, run_id: str) -> Graph | None:
        """The graph run *run_id* was made with (None: not recorded)."""
        with self._errors(f"read the graph of run {run_id!r}"), self._engine.connect() as conn:
            return browse.run_graph(conn, run_id)

    def latest_graph(self, flow: str) -> tuple[str, Graph] | None:
        """The newest run of *flow* with a recorded graph, and the graph."""
        with self._errors(f"read the graph of flow {flow!r}"), self._engine.connect() as conn:
            return browse.latest_graph(conn, flow)

    def task_states(self, run_ids: Sequence[str]) -> dict[str, dict[str, TaskState]]:
        """Per run, each task's latest state."""
        with self._errors("read task states"), self._engine.connect() as conn:
            return browse.task_states(conn, run_ids)

    def recent_runs(self, flows: Sequence[str], per_flow: int) -> dict[str, list[tuple[str, str]]]:
        """The last *per_flow* runs of each flow as ``(run id, state)``, newest first."""
        with self._errors("read recent runs"), self._engine.connect() as conn:
            return browse.recent_runs(conn, flows, per_flow)

    def run_digest(
        self, run_id: str, top: int = digest.TOP, slowest: int = digest.SLOWEST
    ) -> digest.RunDigest:
        """Run *run_id* at a glance: counts by state, the first failed and the slowest tasks."""
        with self._errors(f"read run {run_id!r}"), self._engine.connect() as conn:
            return digest.run_digest(conn, run_id, top, slowest)

    def task_page(
        self, run_id: str, limit: int, offset: int = 0, *, instances: int = 20
    ) -> digest.TaskPage:
        """A page of run *run_id*'s tasks, in the order the run made them (with their attempts).

        Raises:
            CorruptRow: an attempt's row cannot be read.
        """
        with self._errors(f"read tasks of run {run_id!r}"), self._engine.connect() as conn:
            return digest.task_page(conn, run_id, limit, offset, instances=instances)

    def flow_names(self) -> list[str]:
        """Every flow the store knows of, sorted."""
        with self._errors("list flows"), self._engine.connect() as conn:
            return browse.flow_names(conn)

    def paused_flows(self) -> dict[str, datetime]:
        """Paused flows and when each was paused."""
        with self._errors("read paused flows"), self._engine.connect() as conn:
            return browse.paused_flows(conn)

    def set_paused(self, flow: str, paused: bool, at: datetime) -> bool:
        """Pause or unpause *flow*; True when that changed something."""
        with self._errors(f"pause flow {flow!r}"), self._write() as conn:
            return browse.set_paused(conn, flow, paused, at)

    def request_cancel(self, run_id: str, by: str, at: datetime) -> None:
        """Ask the runner of *run_id* to cancel it."""
        with self._errors(f"cancel run {run_id!r}"), self._write() as conn:
            browse.request_cancel(conn, run_id, by, at)

    def cancel_request(self, run_id: str) -> tuple[datetime, str] | None:
        """When and by whom a cancel of *run_id* was asked, if it was."""
        with self._errors(f"read run {run_id!r}"), self._engine.connect() as conn:
            return browse.cancel_request(conn, run_id)

    def counts(self, bounds: Sequence[float]) -> Counts:
        """Runs and attempts by state, attempt durations against *bounds*, the queue, locks."""
        with self._errors("count runs"), self._engine.connect() as conn:
            runs, tasks = browse.count_by_state(conn)
            buckets, finished, seconds = browse.duration_histogram(conn, bounds)
            queued = browse.queue_depth(conn)
            locks = browse.lock_heartbeats(conn)
        return Counts(runs, tasks, buckets, finished, seconds, queued, locks)
