"""The suite's workloads, and what the store must say after a run of one (see bench/README.md).

A run is ``ok`` when the run and every task (and every mapped instance) are recorded
``success`` with the expected counts. The joins of F2K/F10K and M1 and W3's ``deploy`` check
the values they receive (a missing or wrong value fails the task), so ``ok`` also says every
value arrived. L1's latency is read from the same attempt rows: for each link of the chain, the
downstream's ``started_at`` minus the upstream's ``committed_at``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import flows

from rota.model.flows import FlowFunction
from rota.store.base import AttemptRecord, Store


@dataclass(frozen=True)
class Workload:
    key: str
    definition: FlowFunction
    n_tasks: int
    """Tasks in the graph (a mapped task counts once)."""
    params: Mapping[str, Any] = field(default_factory=dict)
    mapped: int = 0
    """Mapped instances made at run time (M1); ms/task divides by these when given."""
    large: bool = False
    """Run once even when --repeat asks for more (F10K, S1, S2, M1)."""

    @property
    def units(self) -> int:
        return self.mapped or self.n_tasks

    @property
    def target(self) -> str:
        """The ``rota run`` argument naming the flow."""
        return f"flows.py:{self.definition.name}"


def _all() -> dict[str, Workload]:
    return {
        "W1": Workload("W1", flows.w1, 200),
        "W2": Workload("W2", flows.w2, 1002),
        "W3": Workload("W3", flows.w3, 6),
        "F2K": Workload("F2K", flows.f2k, 2002),
        "F10K": Workload("F10K", flows.f10k, 10_002, large=True),
        "S1": Workload("S1", flows.s1, 10_000, large=True),
        "S2": Workload("S2", flows.s2, 100_000, large=True),
        "M1": Workload("M1", flows.m1, 3, mapped=10_000, large=True),
        "L1": Workload("L1", flows.l1, 200),
    }


WORKLOADS: dict[str, Workload] = _all()


def scaled(wl: Workload, factor: float) -> Workload:
    """*wl* with its size parameters multiplied by *factor* (the tests run tiny ones)."""
    size = {
        "W1": {"n": 200},
        "W2": {"n": 1000},
        "F2K": {"n": 2000},
        "F10K": {"n": 10_000},
        "S1": {"layers": 100},
        "S2": {"layers": 1000},
        "M1": {"n": 10_000},
        "L1": {"n": 200},
    }.get(wl.key, {})
    params = {k: max(2, int(v * factor)) for k, v in size.items()}
    n_tasks, mapped = wl.n_tasks, wl.mapped
    if wl.key in ("W1", "L1"):
        n_tasks = params["n"]
    elif wl.key in ("W2", "F2K", "F10K"):
        n_tasks = params["n"] + 2
    elif wl.key in ("S1", "S2"):
        n_tasks = params["layers"] * 100
    elif wl.key == "M1":
        mapped = params["n"]
    return Workload(wl.key, wl.definition, n_tasks, params, mapped, wl.large)


def latest(attempts: list[AttemptRecord]) -> dict[tuple[str, int], AttemptRecord]:
    """The newest attempt of each task and mapped instance."""
    out: dict[tuple[str, int], AttemptRecord] = {}
    for a in attempts:
        key = (a.task_id, a.map_index)
        if key not in out or a.try_number > out[key].try_number:
            out[key] = a
    return out


def check_run(store: Store, run_id: str, wl: Workload) -> dict[str, Any]:
    """``ok`` and the counts the store holds for run *run_id* of *wl* (L1: its latencies)."""
    run = store.get_run(run_id)
    rows = latest(store.attempts(run_id))
    tasks = {t for t, _ in rows}
    instances = sum(1 for (_, i) in rows if i >= 0)
    succeeded = sum(1 for a in rows.values() if a.state.value == "success")
    ok = run is not None and run.state.value == "success" and len(tasks) == wl.n_tasks
    ok = ok and instances == wl.mapped and succeeded == len(rows)
    out: dict[str, Any] = {"ok": ok, "tasks": len(tasks), "instances": instances}
    out["succeeded"] = succeeded
    if wl.key == "L1":
        out.update(chain_latency(rows))
    return out


def chain_latency(rows: Mapping[tuple[str, int], AttemptRecord]) -> dict[str, Any]:
    """Per link step_i -> step_{i+1} of the chain, in ms: from step_i's success commit
    (``committed_at``) to step_{i+1}'s start (``started_at``), and from step_i's end
    (``finished_at``, stamped by the worker) to step_{i+1}'s start."""
    commit: list[float] = []
    finish: list[float] = []
    i = 1
    while (up := rows.get((f"step_{i - 1}", -1))) and (down := rows.get((f"step_{i}", -1))):
        if down.started_at is not None and up.committed_at is not None:
            commit.append((down.started_at - up.committed_at).total_seconds() * 1000)
        if down.started_at is not None and up.finished_at is not None:
            finish.append((down.started_at - up.finished_at).total_seconds() * 1000)
        i += 1
    out: dict[str, Any] = {"latency_links": len(commit)}
    for name, gaps in (("latency", commit), ("latency_finish", finish)):
        if gaps:
            out.update(_percentiles(name, gaps))
    return out


def _percentiles(name: str, gaps: list[float]) -> dict[str, float]:
    gaps = sorted(gaps)
    p99 = gaps[min(len(gaps) - 1, round(0.99 * (len(gaps) - 1)))]
    return {
        f"{name}_p50_ms": round(statistics.median(gaps), 3),
        f"{name}_p99_ms": round(p99, 3),
        f"{name}_max_ms": round(gaps[-1], 3),
    }
