"""Flows as the UI lists them: from the store, with schedules from the flows folder if given."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from rota.errors import NotFound
from rota.web import views
from rota.web.context import WebContext

LAST_RUNS: Final = 10
GRID_RUNS: Final = 25


def _schedule(info: Any, now: datetime) -> tuple[str, str | None]:
    """A flow's schedule, and when its next run falls due (ISO), from its parsed info."""
    if info is None:
        return "", None
    timing = info.timing()
    described = timing.describe()
    if timing.schedule is None:
        return described, None
    nxt = timing.schedule.next_after(now)
    return described, views.iso(nxt.end) if nxt is not None else None


def flow_rows(ctx: WebContext, now: datetime) -> list[dict[str, Any]]:
    """Every flow the store or the flows folder knows, with its schedule and last runs."""
    scanned = ctx.scan()
    names = sorted(set(ctx.store.flow_names()) | set(scanned))
    paused = ctx.store.paused_flows()
    recent = ctx.store.recent_runs(names, LAST_RUNS)
    rows = []
    for name in names:
        schedule, next_run = _schedule(scanned.get(name), now)
        rows.append(
            {
                "flow": name,
                "schedule": schedule,
                "next_run": next_run,
                "paused": name in paused,
                "last_runs": [{"run_id": r, "state": s} for r, s in recent.get(name, [])],
            }
        )
    return rows


def flow_page(ctx: WebContext, flow: str, now: datetime) -> dict[str, Any]:
    """One flow: its schedule, its newest recorded graph, and the grid of its recent runs.

    Raises:
        NotFound: neither the store nor the flows folder knows *flow*.
    """
    scanned = ctx.scan()
    record = ctx.store.get_flow(flow)
    runs = ctx.store.list_runs(flow, GRID_RUNS, on_corrupt=lambda _bad: None)
    if record is None and not runs and flow not in scanned:
        raise NotFound(f"no flow named {flow!r}")
    latest = ctx.store.latest_graph(flow)
    graph = latest[1] if latest is not None else []
    tasks = [tid for tid, _ in graph]
    states = ctx.store.task_states([r.run_id for r in runs])
    for run_states in states.values():  # tasks of older runs the newest graph lacks
        tasks.extend(t for t in run_states if t not in tasks)
    schedule, next_run = _schedule(scanned.get(flow), now)
    info = scanned.get(flow)
    return {
        "flow": flow,
        "path": record.path if record is not None else (info.path if info else ""),
        "schedule": schedule,
        "next_run": next_run,
        "paused": flow in ctx.store.paused_flows(),
        "params": dict(info.params) if info is not None else None,
        "graph_run": latest[0] if latest is not None else None,
        "graph": [{"id": tid, "upstream": list(ups)} for tid, ups in graph],
        "runs": [views.run_json(r) for r in runs],
        "grid": views.grid(runs, states, tasks),
    }


def flow_target(ctx: WebContext, flow: str) -> str:
    """How ``rota`` commands name *flow*: by name in the flows folder, else by its recorded file.

    Raises:
        NotFound: neither knows the flow.
    """
    if ctx.flows_dir is not None:
        return flow
    record = ctx.store.get_flow(flow)
    if record is None or not record.path:
        raise NotFound(f"the store has no file for flow {flow!r}; start rota ui with --flows DIR")
    return f"{record.path}:{flow}"


def reliability(ctx: WebContext, flow: str, last: int, target: float) -> dict[str, Any]:
    """The numbers of ``rota stats`` for *flow* (run as that command, cached per newest run)."""
    newest = ctx.store.list_runs(flow, 1, on_corrupt=lambda _bad: None)
    record = ctx.store.get_flow(flow)
    key = (flow, str(last), str(target), newest[0].run_id if newest else "",
           newest[0].state.value if newest else "", record.code_hash if record else "")  # fmt: skip
    found = ctx.stats_cache.get(key)
    if found is None:
        found = ctx.actions.stats(flow_target(ctx, flow), last, target)
        ctx.stats_cache[key] = found
    return found
