"""What the pages and the API show, computed from the store: plain data, rendered elsewhere.

Every value here is data: templates escape it (Jinja2 autoescape), the API sends it as JSON.
Parameters are shown as :func:`~rota.model.secrets.display_params` gives them (secrets ``***``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from rota.engine.report import NOT_RUN, RunSummary, TaskSummary, summarize
from rota.model.critical import Span, critical_path
from rota.model.secrets import display_params
from rota.model.states import RUN_TERMINAL, TaskState
from rota.store.base import AttemptRecord, RunRecord, Store
from rota.web.layout import Layout, layout

GRAPH_MAX: Final = 2000
"""Runs with more tasks show no graph (the grid, table and Gantt still show every task)."""
GANTT_MAX: Final = 1000
"""The Gantt chart shows the first this many tasks by start time."""
TABLE_MAX: Final = 1000
"""The run page's task table shows this many tasks (unfinished and failed ones first)."""
GANTT_W: Final = 900
ROW_H: Final = 18


def iso(value: datetime | None) -> str | None:
    """An ISO 8601 string, or None."""
    return value.isoformat() if value is not None else None


def run_json(run: RunRecord) -> dict[str, Any]:
    """A run as the API gives it (parameters with secrets masked)."""
    return {
        "run_id": run.run_id,
        "flow": run.flow,
        "state": run.state.value,
        "run_type": run.run_type,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "logical_date": iso(run.logical_date),
        "data_interval_start": iso(run.data_interval_start),
        "data_interval_end": iso(run.data_interval_end),
        "params": display_params(run.params),
        "owner": run.owner,
    }


def attempt_json(a: AttemptRecord) -> dict[str, Any]:
    """An attempt as the API gives it (no traceback: see the attempt's own route)."""
    return {
        "id": a.id,
        "task_id": a.task_id,
        "map_index": a.map_index,
        "try_number": a.try_number,
        "state": a.state.value,
        "operator": a.operator,
        "queued_at": iso(a.queued_at),
        "dispatched_at": iso(a.dispatched_at),
        "started_at": iso(a.started_at),
        "finished_at": iso(a.finished_at),
        "committed_at": iso(a.committed_at),
        "not_before": iso(a.not_before),
        "worker": a.worker,
        "error_type": a.error_type,
        "error_message": a.error_message,
        "output": None
        if a.output_path is None
        else {
            "serializer": a.output_serializer,
            "size": a.output_size,
            "length": a.output_length,
            "hash": a.output_hash,
        },
        "cached_from": a.cached_from,
        "has_log": bool(a.log_path),
    }


def spans(attempts: Iterable[AttemptRecord]) -> dict[str, Span]:
    """Per task (instances of a mapped task together): when it first became ready, when it last
    ended."""
    ready: dict[str, datetime | None] = {}
    end: dict[str, datetime | None] = {}
    for a in attempts:
        start = a.queued_at or a.started_at
        if a.task_id not in ready:
            ready[a.task_id], end[a.task_id] = start, a.finished_at
            continue
        prev = ready[a.task_id]
        if start is not None and (prev is None or start < prev):
            ready[a.task_id] = start
        last = end[a.task_id]
        if a.finished_at is not None and (last is None or a.finished_at > last):
            end[a.task_id] = a.finished_at
    return {tid: Span(ready[tid], end[tid]) for tid in ready}


@dataclass(frozen=True, slots=True)
class Bar:
    """One segment of a Gantt row: ``queue`` (ready to started) or ``run`` (started to ended)."""

    kind: str
    state: str
    try_number: int
    x: float
    w: float
    title: str


@dataclass(frozen=True, slots=True)
class GanttRow:
    task_id: str
    critical: bool
    bars: tuple[Bar, ...]


@dataclass(frozen=True, slots=True)
class Gantt:
    rows: tuple[GanttRow, ...]
    seconds: float
    width: int
    height: int
    hidden: int
    """Tasks not drawn (beyond GANTT_MAX)."""


def _bars(a: AttemptRecord, t0: datetime, scale: float, now: datetime) -> list[Bar]:
    out: list[Bar] = []
    ready = a.queued_at or a.started_at
    if ready is not None and a.started_at is not None and a.started_at > ready:
        wait = (a.started_at - ready).total_seconds()
        x = (ready - t0).total_seconds() * scale
        out.append(Bar("queue", a.state.value, a.try_number, x, wait * scale,
                       f"try {a.try_number}: waited {wait:.3f} s"))  # fmt: skip
    if a.started_at is not None:
        end = a.finished_at or now
        took = (end - a.started_at).total_seconds()
        x = (a.started_at - t0).total_seconds() * scale
        out.append(Bar("run", a.state.value, a.try_number, x, max(took * scale, 1.0),
                       f"try {a.try_number}: {a.state.value}, ran {took:.3f} s"))  # fmt: skip
    return out


def gantt(attempts: Sequence[AttemptRecord], critical: Sequence[str], now: datetime) -> Gantt:
    """The Gantt chart of a run's attempts: per task its tries' waits and run times."""
    starts = [a.queued_at or a.started_at for a in attempts]
    known = [s for s in starts if s is not None]
    if not known:
        return Gantt((), 0.0, GANTT_W, 0, 0)
    t0 = min(known)
    ends = [a.finished_at or (now if a.started_at else None) for a in attempts]
    t1 = max([e for e in ends if e is not None] + known)
    seconds = max((t1 - t0).total_seconds(), 1e-6)
    scale = GANTT_W / seconds
    first: dict[str, datetime] = {}
    by_task: dict[str, list[AttemptRecord]] = {}
    for a, s in zip(attempts, starts, strict=True):
        if s is None:
            continue
        by_task.setdefault(a.task_id, []).append(a)
        first[a.task_id] = min(first.get(a.task_id, s), s)
    order = sorted(first, key=lambda tid: (first[tid], tid))
    on_path = set(critical)
    rows = [
        GanttRow(
            tid, tid in on_path, tuple(b for a in by_task[tid] for b in _bars(a, t0, scale, now))
        )
        for tid in order[:GANTT_MAX]
    ]
    return Gantt(tuple(rows), seconds, GANTT_W, len(rows) * ROW_H, max(0, len(order) - GANTT_MAX))


@dataclass
class RunView:
    """Everything the run page shows."""

    run: RunRecord
    summary: RunSummary
    attempts: list[AttemptRecord]
    graph: list[tuple[str, tuple[str, ...]]]
    graph_recorded: bool
    layout: Layout | None
    critical: list[str]
    gantt: Gantt
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.run.state in RUN_TERMINAL

    def task_rows(self) -> list[TaskSummary]:
        """Tasks in the graph's order (then any the graph does not name)."""
        tasks = self.summary.tasks
        named = [tasks[tid] for tid, _ in self.graph if tid in tasks]
        seen = {t.task_id for t in named}
        return named + [t for tid, t in tasks.items() if tid not in seen]

    def table_rows(self) -> tuple[list[TaskSummary], int]:
        """The tasks the page's table shows (those not succeeded first), and how many it hides."""
        rows = self.task_rows()
        if len(rows) <= TABLE_MAX:
            return rows, 0
        done = frozenset({TaskState.SUCCESS, TaskState.CACHED, TaskState.SKIPPED})
        rows.sort(key=lambda t: t.state in done)  # stable: graph order within each group
        return rows[:TABLE_MAX], len(rows) - TABLE_MAX


class _ReadOnce:
    """The store, with one run's attempts read once (a 10,000-task run's are many rows)."""

    def __init__(self, store: Any, run_id: str) -> None:
        self._store = store
        self._run: RunRecord = store.get_run(run_id)
        self._attempts: list[AttemptRecord] = store.attempts(run_id)

    def get_run(self, run_id: str) -> RunRecord:
        return self._run

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        return self._attempts


def run_view(store: Any, run_id: str, now: datetime) -> RunView:
    """Read run *run_id* and lay out its graph, critical path and Gantt chart.

    Raises:
        NotFound: no such run.
    """
    once = _ReadOnce(store, run_id)
    summary = summarize(cast(Store, once), run_id)
    attempts = once.attempts(run_id)
    recorded = store.run_graph(run_id)
    graph = recorded if recorded is not None else [(tid, ()) for tid in summary.tasks]
    upstream = dict(graph)
    critical = critical_path(spans(attempts), upstream)
    drawn = layout(graph) if len(graph) <= GRAPH_MAX else None
    return RunView(
        summary.run, summary, attempts, graph, recorded is not None, drawn, critical,
        gantt(attempts, critical, now), display_params(summary.run.params),
    )  # fmt: skip


def live_json(summary: RunSummary) -> dict[str, Any]:
    """The run's state and each task's, for pages that follow a run."""
    return {
        "run_id": summary.run_id,
        "state": summary.state.value,
        "ended": summary.state in RUN_TERMINAL,
        "tasks": {tid: t.state.value for tid, t in summary.tasks.items()},
    }


def task_json(t: TaskSummary) -> dict[str, Any]:
    """A task of a run: its state, tries, mapped instances and where its time went."""
    return {
        "task_id": t.task_id,
        "state": t.state.value,
        "tries": t.attempts,
        "mapped": t.mapped,
        "duration_s": t.duration_s,
        "waits": t.waits(),
        "reason": t.latest.error_message if t.state in NOT_RUN else None,
    }


def instances(attempts: Sequence[AttemptRecord], task_id: str) -> list[AttemptRecord]:
    """Every attempt of *task_id*, the task's own first, then its instances by index and try."""
    mine = [a for a in attempts if a.task_id == task_id]
    return sorted(mine, key=lambda a: (a.map_index, a.try_number))


def grid(
    runs: Sequence[RunRecord], states: Mapping[str, Mapping[str, TaskState]], tasks: Sequence[str]
) -> list[dict[str, Any]]:
    """Rows of the grid (one per task) with a cell per run, oldest run first."""
    ordered = list(reversed(runs))
    return [
        {
            "task_id": tid,
            "cells": [
                {"run_id": r.run_id, "state": s.value if (s := states[r.run_id].get(tid)) else ""}
                for r in ordered
            ],
        }
        for tid in tasks
    ]
