"""How people see runs: ``rota runs list`` as a table and ``rota runs show`` as a tree.

Run ids are never cut (``no_wrap``); other columns fold instead. Times are UTC, to the second;
durations are short (``0.41s``, ``3m 05s``, ``2h 03m``). The tree is tasks, then attempts
(state, start, duration, the error's first line, the wait before a retry), then, for a mapped
task, the instances that did not succeed, each with its own attempts and errors. Every piece of
outside text is built with :func:`~rota.cli.console.line`, so it prints as text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

from rich import box
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from rota.cli.console import line
from rota.cli.render import styled
from rota.engine.report import NOT_RUN, RunSummary
from rota.model.secrets import display_params
from rota.model.states import SUCCEEDED, TaskState
from rota.store.base import AttemptRecord, RunRecord

INSTANCES_SHOWN: Final = 20
"""Instances of one mapped task the tree lists (those that did not succeed come first)."""

_WIDE: Final = 110
"""From this many columns on, ``runs list`` adds the logical date and the run type."""


def duration(seconds: float | None) -> str:
    """A short duration: ``0.41s``, ``12.3s``, ``3m 05s``, ``2h 03m``, ``3d 04h``; ``-`` if None."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{max(seconds, 0):.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if whole >= size:
            return f"{whole // size}{unit} {(whole % size) // sub_size:02d}{sub}"
    return f"{whole // 60}m {whole % 60:02d}s"


def stamp(when: datetime | None, *, day_of: datetime | None = None) -> str:
    """*when* in UTC to the second; the time alone when it falls on the day of *day_of*."""
    if when is None:
        return "-"
    utc = when.astimezone(UTC)
    if day_of is not None and utc.date() == day_of.astimezone(UTC).date():
        return f"{utc:%H:%M:%S}"
    return f"{utc:%Y-%m-%d %H:%M:%S}"


def _took(start: datetime | None, end: datetime | None, now: datetime) -> str:
    if start is None:
        return "-"
    if end is None:
        return duration((now - start).total_seconds()) + "…"
    return duration((end - start).total_seconds())


def runs_table(runs: Iterable[RunRecord], *, width: int, now: datetime) -> Table:
    """Runs, newest first: whole ids, state, start (UTC) and how long each took (so far)."""
    wide = width >= _WIDE
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("run id", no_wrap=True)
    table.add_column("flow", overflow="fold")
    table.add_column("state", no_wrap=True)
    if wide:
        table.add_column("type", no_wrap=True)
        table.add_column("logical date (UTC)", no_wrap=True)
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("took", no_wrap=True, justify="right")
    for r in runs:
        row: list[str | Text] = [line(r.run_id), line(r.flow), styled(r.state.value)]
        if wide:
            row += [line(r.run_type), stamp(r.logical_date)]
        row += [stamp(r.started_at), _took(r.started_at, r.ended_at, now)]
        table.add_row(*row)
    return table


def run_header(summary: RunSummary, now: datetime) -> list[Text]:
    """The lines above the tree: id, flow, state; how and when; parameters."""
    run = summary.run
    lines = [line(f"run {run.run_id} · flow {run.flow} · ", styled(run.state.value))]
    when = f"{run.run_type} · started {stamp(run.started_at)} UTC"
    if run.started_at is not None:
        when += f" · took {_took(run.started_at, run.ended_at, now)}"
    if run.logical_date is not None:
        when += f" · logical date {stamp(run.logical_date)}"
    start, end = run.data_interval_start, run.data_interval_end
    if start is not None and end is not None and start != end:
        when += f" · interval {stamp(start)} → {stamp(end)}"
    lines.append(line((when, "grey50")))
    params = display_params(run.params)
    if params:
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        lines.append(line(("params ", "grey50"), shown))
    for entry in run.param_changes or ():
        moved = entry.get("changes", {})
        said = ", ".join(f"{k} {v.get('from')!r} -> {v.get('to')!r}" for k, v in moved.items())
        lines.append(line((f"params changed by a resume at {entry.get('at')}: ", "grey50"), said))
    return lines


def run_tree(summary: RunSummary, records: Sequence[AttemptRecord], now: datetime) -> Tree:
    """Tasks → attempts → mapped instances (see the module docstring)."""
    by_key: dict[tuple[str, int], list[AttemptRecord]] = {}
    for rec in sorted(records, key=lambda r: (r.task_id, r.map_index, r.try_number)):
        by_key.setdefault((rec.task_id, rec.map_index), []).append(rec)
    tree = Tree(line((f"flow {summary.run.flow}", "bold")), guide_style="grey50")
    day = summary.run.started_at or summary.run.created_at
    for tid, t in summary.tasks.items():
        tries = by_key.get((tid, -1), [])
        if t.instances is None:
            _attempts(tree, tid, tries, day, now)
            continue
        node = tree.add(line(tid, "  ", styled(t.state.value), "  ", _mapped_note(t.mapped)))
        _instances(node, tid, t.instances, by_key, day, now, _unfinished_count(t.mapped))
    return tree


def _unfinished_count(mapped: dict[str, int] | None) -> int | None:
    """How many instances did not succeed, from a mapped task's counts (None: not known)."""
    if not mapped or "count" not in mapped:
        return None
    return mapped["count"] - sum(mapped.get(state.value, 0) for state in SUCCEEDED)


def _mapped_note(mapped: dict[str, int] | None) -> Text:
    counts = dict(mapped or {})
    total = counts.pop("count", 0)
    order = {state.value: i for i, state in enumerate(TaskState)}
    parts = ", ".join(f"{counts[s]} {s}" for s in sorted(counts, key=lambda s: order.get(s, 99)))
    return line((f"mapped: {total} instance{'s' * (total != 1)}" + (f" ({parts})" * bool(parts)),
                 "grey50"))  # fmt: skip


def _instances(
    node: Tree,
    tid: str,
    latest: Mapping[int, AttemptRecord],
    by_key: dict[tuple[str, int], list[AttemptRecord]],
    day: datetime,
    now: datetime,
    unfinished_count: int | None = None,
) -> None:
    """The instances that did not succeed (those that did are counted on the task's line);
    *unfinished_count* says how many there are when *latest* holds only those shown (a page)."""
    unfinished = [i for i in sorted(latest) if latest[i].state not in SUCCEEDED]
    for index in unfinished[:INSTANCES_SHOWN]:
        _attempts(node, f"{tid}[{index}]", by_key.get((tid, index), []), day, now)
    total = len(unfinished) if unfinished_count is None else max(unfinished_count, len(unfinished))
    hidden = total - INSTANCES_SHOWN
    if hidden > 0:
        node.add(line((f"… and {hidden} more (rota runs show --json lists them)", "grey50")))


def _attempts(
    parent: Tree, name: str, tries: list[AttemptRecord], day: datetime, now: datetime
) -> None:
    """One task (or instance): a line, and its attempts below it when it took several or
    failed."""
    if not tries:
        return
    last = tries[-1]
    started = [t for t in tries if t.started_at is not None]
    head = line(name, "  ", styled(last.state.value))
    if len(started) <= 1 and last.state is not TaskState.FAILED:
        if last.state not in NOT_RUN:  # why it did not run is said below the tree
            head.append_text(line("  ", _when(last, day, now)))
        parent.add(head)
        return
    head.append_text(line(("  " + f"{len(started)} tr{'ies' if len(started) != 1 else 'y'}",
                           "grey50")))  # fmt: skip
    node = parent.add(head)
    previous: AttemptRecord | None = None
    for rec in tries:
        node.add(_attempt_line(rec, previous, day, now))
        previous = rec


def _when(rec: AttemptRecord, day: datetime, now: datetime) -> Text:
    if rec.started_at is None:
        return line(("not started", "grey50"))
    return line((f"{stamp(rec.started_at, day_of=day)}  ", "grey50"),
                _took(rec.started_at, rec.finished_at, now))  # fmt: skip


def _attempt_line(
    rec: AttemptRecord, previous: AttemptRecord | None, day: datetime, now: datetime
) -> Text:
    out = line(f"try {rec.try_number}  ", styled(rec.state.value), "  ", _when(rec, day, now))
    wait = _wait(rec, previous)
    if wait:
        out.append_text(line((f"  {wait}", "yellow")))
    if rec.error_message and rec.state not in SUCCEEDED:
        first = rec.error_message.strip().splitlines()[0] if rec.error_message.strip() else ""
        out.append_text(line("  ", (f"{rec.error_type or 'error'}: {first}", "red")))
    return out


def _wait(rec: AttemptRecord, previous: AttemptRecord | None) -> str:
    """How this attempt came to be: a retry and its wait, a ``rota clear``, or a resume."""
    if previous is None:
        return ""
    if rec.cleared_at is not None:
        return "(cleared)"
    if previous.state is not TaskState.UP_FOR_RETRY:
        return "(resumed)"
    if rec.not_before is None or previous.finished_at is None:
        return "(retried)"
    wait = (rec.not_before - previous.finished_at).total_seconds()
    return f"(retried after {duration(wait)})" if wait > 0 else "(retried at once)"
