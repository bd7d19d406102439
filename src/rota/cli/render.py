"""Rendering runs, tasks and graphs for people (rich) and for programs (JSON).

Text from outside Rota's code (ids, error messages, parameters, file names) is data: strings are
printed through :class:`~rota.cli.console.SafeConsole`, styled lines are built with
:func:`~rota.cli.console.line`, and text for ``click.echo`` goes through
:func:`~rota.model.safetext.safe_text`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rota.cli.console import line
from rota.engine.report import NOT_RUN, RunSummary, run_json
from rota.model.safetext import safe_text
from rota.model.states import RunState, TaskState
from rota.store.base import AttemptRecord, RunRecord

if TYPE_CHECKING:  # types only; importing the engine here would slow every command's start
    from rota.engine.launcher import Ended
    from rota.engine.runner import Progress
    from rota.engine.scheduler import TickReport
    from rota.model.dag import Dag

STATE_STYLE = {
    "success": "green",
    "failed": "red",
    "upstream_failed": "dark_orange",
    "skipped": "grey50",
    "running": "cyan",
    "queued": "blue",
    "scheduled": "grey50",
    "interrupted": "magenta",
}


def styled(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def summary_table(summary: RunSummary, *, detail: bool = False) -> Table:
    """Per-task states; with *detail*, the four waits of each task's latest attempt."""
    run = summary.run
    when = ""
    if run.logical_date is not None and run.data_interval_end is not None:
        start = run.data_interval_start or run.logical_date
        when = f" · {run.run_type} {start.isoformat()} → {run.data_interval_end.isoformat()}"
    table = Table(
        title=line(f"run {run.run_id} · flow {run.flow} · ", styled(run.state.value), when),
        title_justify="left",
        min_width=60,
    )
    table.add_column("task")
    table.add_column("state")
    table.add_column("attempts", justify="right")
    table.add_column("duration", justify="right")
    if detail:
        for col in ("queue", "dispatch", "execute", "hand-off"):
            table.add_column(col, justify="right")
    for tid, t in summary.tasks.items():
        row: list[Any] = [tid, styled(t.state.value), str(t.attempts), _fmt_s(t.duration_s)]
        if detail:
            w = t.waits()
            row += [_fmt_s(w[k]) for k in ("queue_s", "dispatch_s", "execute_s", "handoff_s")]
        table.add_row(*row)
    return table


ERRORS_PER_TASK = 10
"""Failed instances of one mapped task whose errors are listed (the rest are counted)."""


def error_lines(summary: RunSummary) -> list[str]:
    """One line per failed task: its error type and message; for a mapped task, each failed
    instance's own error (``fit[3] (attempt 2): TaskTimeout: ...``), not the count."""
    out = []
    for tid, t in summary.tasks.items():
        if t.state is not TaskState.FAILED:
            continue
        failed = t.failed_instances()
        for rec in failed[:ERRORS_PER_TASK]:
            out.append(_error_line(f"{tid}[{rec.map_index}]", rec))
        if len(failed) > ERRORS_PER_TASK:
            out.append(f"{tid}: and {len(failed) - ERRORS_PER_TASK} more failed instances")
        if not failed and t.latest.error_message:
            out.append(_error_line(tid, t.latest))
    return out


def _error_line(name: str, rec: AttemptRecord) -> str:
    kind = rec.error_type or "error"
    return safe_text(f"{name} (attempt {rec.try_number}): {kind}: {rec.error_message or ''}")


def handled_note(summary: RunSummary) -> str | None:
    """For a run that succeeded although tasks failed, a line naming them and why it succeeded."""
    failed = summary.failed_tasks
    if summary.state is not RunState.SUCCESS or not failed:
        return None
    names = ", ".join(failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
    return safe_text(
        f"run succeeded with {len(failed)} failed task(s): {names}; every leaf task succeeded "
        "or was skipped, so the failures were handled (the run's leaves decide, as in Airflow)"
    )


def reason_lines(summary: RunSummary) -> list[str]:
    """One line per task that ended without running: why (its trigger rule, or a branch)."""
    out = []
    for tid, t in summary.tasks.items():
        if t.state in NOT_RUN and t.latest.error_message:
            out.append(safe_text(f"{tid} {t.state.value}: {t.latest.error_message}"))
    return out


def cache_parts_lines(rec: AttemptRecord) -> list[str]:
    """The parts of an attempt's cache key, one per line."""
    parts = rec.cache_parts or {}
    lines = [f"key {rec.cache_key or '(none)'}", f"  code {parts.get('code')}"]
    for name, value in sorted(parts.get("code_parts", {}).items()):
        lines.append(f"    {name} = {value}")
    if parts.get("version"):
        lines.append(f"  version {parts['version']!r}")
    for name, value in sorted(parts.get("inputs", {}).items()):
        lines.append(f"  input {name} = {value}")
    if "constants" in parts:
        lines.append(f"  constants {parts.get('constants')}")
    return lines + _named_parts_lines(parts)


def _named_parts_lines(parts: Mapping[str, Any]) -> list[str]:
    """The run facts, rendered templates and cache_key parts of a key, under a heading each."""
    on = parts.get("cache_on")
    lines: list[str] = []
    if parts.get("run") or on is not None:
        said = "everything the task can read" if on is None else f"cache_on={', '.join(on) or '()'}"
        lines.append(f"  run facts ({said})")
        lines += _values(parts.get("run"))
    for group, heading in (("rendered", "rendered templates"), ("extra", "cache_key parts")):
        if parts.get(group):
            lines.append(f"  {heading}")
            lines += _values(parts.get(group))
    if parts.get("user_key") is not None:
        lines.append(f"  cache_key result {parts['user_key']!r}")
    return lines


def _values(named: Mapping[str, Any] | None) -> list[str]:
    return [f"    {name} = {value!r}" for name, value in sorted((named or {}).items())]


def runs_table(runs: Iterable[RunRecord]) -> Table:
    table = Table()
    for col in ("run id", "flow", "state", "type", "logical date", "started", "ended"):
        table.add_column(col)
    for r in runs:
        d = run_json(r)
        table.add_row(
            r.run_id, r.flow, styled(r.state.value), r.run_type, d["logical_date"] or "-",
            d["started"] or "-", d["ended"] or "-",
        )  # fmt: skip
    return table


def print_json(console: Console, value: Any) -> None:
    """Print *value* as one line of JSON (never wrapped, never styled)."""
    console.file.write(json.dumps(value, default=str) + "\n")
    console.file.flush()


class LiveProgress:
    """A live display of a run for a terminal: counts, and the tasks running now."""

    def __init__(self, console: Console) -> None:
        self._live = Live(Text("starting…"), console=console, refresh_per_second=10, transient=True)

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)

    def update(self, p: Progress) -> None:
        shown = Text.assemble(
            (f"{p.done} done", "green"),
            " · ",
            (f"{len(p.running)} running", "cyan"),
            " · ",
            (f"{p.failed} failed", "red"),
            " · ",
            (f"{p.remaining} remaining", "grey50"),
            f"  of {p.total}",
        )
        if p.running:
            names = ", ".join(p.running[:8]) + (" …" if len(p.running) > 8 else "")
            shown.append("\nrunning: " + safe_text(names))
        if p.waiting:
            waits = "; ".join(w.describe() for w in p.waiting[:4])
            more = f" (+{len(p.waiting) - 4} more)" if len(p.waiting) > 4 else ""
            shown.append("\nwaiting: " + safe_text(waits + more), style="yellow")
        self._live.update(shown)


class PlainProgress:
    """Progress as plain lines, for logs and pipes: one line whenever the counts change."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._last: tuple[int, int] | None = None
        self._waits: frozenset[tuple[str, str]] = frozenset()

    def update(self, p: Progress) -> None:
        key = (p.done, p.failed)
        if key != self._last:
            self._last = key
            self._say(
                f"[{p.run_id}] {p.done} done, {len(p.running)} running, {p.failed} failed, "
                f"{p.remaining} remaining of {p.total}"
            )
        waits = frozenset((w.task, w.why) for w in p.waiting)
        for w in p.waiting:  # once per wait that begins, not at every tick of its countdown
            if (w.task, w.why) not in self._waits:
                self._say(f"[{p.run_id}] {w.describe()}")
        self._waits = waits

    def _say(self, text: str) -> None:
        self._console.print(safe_text(text), markup=False, highlight=False, soft_wrap=True)


def graph_text(dag: Dag, fmt: str) -> str:
    """The graph as ``ascii`` (one line per task with its upstreams), ``mermaid`` or ``dot``."""
    if fmt == "mermaid":
        lines = ["flowchart LR"]
        lines += [f"    {tid}[{tid}]" for tid in dag.order]
        lines += [f"    {a} --> {b}" for a, b in dag.edges()]
        return "\n".join(lines)
    if fmt == "dot":
        lines = [f'digraph "{dag.name}" {{', "    rankdir=LR;"]
        lines += [f'    "{tid}";' for tid in dag.order]
        lines += [f'    "{a}" -> "{b}";' for a, b in dag.edges()]
        lines.append("}")
        return "\n".join(lines)
    depth: dict[str, int] = {}
    for tid in dag.order:
        ups = dag.tasks[tid].upstream
        depth[tid] = 1 + max((depth[u] for u in ups), default=-1)
    out = [f"flow {dag.name} ({len(dag)} tasks)"]
    for tid in dag.order:
        ups = dag.tasks[tid].upstream
        arrow = f"  <- {', '.join(ups)}" if ups else ""
        out.append(f"{'  ' * depth[tid]}{tid} [{dag.tasks[tid].op.kind}]{arrow}")
    return "\n".join(out)


_DRIVER_OUTCOMES = {
    0: "succeeded", 1: "failed", 3: "was busy", 4: "lost its lease (it is resumed)",
    75: "stopped: the store is out of reach (it is resumed)", 130: "was interrupted",
}  # fmt: skip


def say_end(console: Console, end: Ended) -> None:
    """One line for a driver that exited: how its run ended."""
    outcome = _DRIVER_OUTCOMES.get(end.code, f"driver exited {end.code}")
    console.print(line(f"run {end.run_id} {outcome}"), soft_wrap=True)


def say_tick(console: Console, report: TickReport) -> None:
    """What a scheduler tick did, one line per fact; each bad flow file named on one line."""
    if report.outage_began:
        console.print(
            line((f"store out of reach: {report.store_error}; retrying every tick", "red")),
            soft_wrap=True,
        )
    if report.recovered_after is not None:
        console.print(f"store reachable again after {report.recovered_after:.1f}s")
    if report.rescanned:
        console.print(f"loaded {report.flows} flow(s); {len(report.errors)} bad file(s)")
    for path, error in sorted(report.new_errors.items()):
        where = "" if error.startswith(path) else f"{path}: "
        console.print(line((f"bad flow file {where}{error}", "red")), soft_wrap=True)
    for run in report.created:
        when = run.logical_date.isoformat() if run.logical_date else "-"
        console.print(line(f"created run {run.run_id} of {run.flow} for {when}"), soft_wrap=True)
    for run_id in report.launched:
        console.print(line(f"started run {run_id}"), soft_wrap=True)
    for end in report.ended:
        say_end(console, end)
