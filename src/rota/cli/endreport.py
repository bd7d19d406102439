"""A run in a constant number of lines: what ``rota run`` and ``rota resume`` print at the end of
a large run, and ``rota runs show`` above a page of its tasks.

A small run (at most :data:`SMALL_RUN` tasks) is shown whole, as a tree, as before; a larger one as
a digest: its tasks counted by state, the first failed tasks with their errors, the slowest tasks
and the time tasks took, with the commands that show the rest. Outside text (ids, errors) is built
with :func:`~rota.cli.console.line`, so it prints as text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from rota.model.states import TaskState

if TYPE_CHECKING:  # `rota --help` reads SMALL_RUN; the store and rich load when a run ends
    from rich.text import Text

    from rota.engine.report import RunSummary
    from rota.store.base import AttemptRecord
    from rota.store.digest import RunDigest, TaskLine

SMALL_RUN: Final = 30
"""Runs of at most this many tasks and mapped instances are shown whole, as a tree; larger ones as
a digest."""

_ORDER: Final = {state.value: i for i, state in enumerate(TaskState)}


def is_small(summary: RunSummary) -> bool:
    """Whether the run's tasks and mapped instances are at most :data:`SMALL_RUN`."""
    instances = sum(len(t.instances or {}) for t in summary.tasks.values())
    return len(summary.tasks) + instances <= SMALL_RUN


def digest_of(summary: RunSummary, top: int | None = None) -> RunDigest:
    """The digest of a run already read whole (the summary a run ends with); *top* failed and
    slowest tasks (default :data:`~rota.store.digest.TOP`)."""
    from rota.store.digest import SLOWEST, TOP, RunDigest

    top = TOP if top is None else top
    states: dict[str, int] = {}
    instances: dict[str, int] = {}
    failed: list[TaskLine] = []
    timed: list[TaskLine] = []
    for tid, t in summary.tasks.items():
        states[t.state.value] = states.get(t.state.value, 0) + 1
        shown = [(f"{tid}[{i}]", rec) for i, rec in sorted((t.instances or {}).items())]
        for _, rec in shown:
            instances[rec.state.value] = instances.get(rec.state.value, 0) + 1
        for index, (name, rec) in enumerate([(tid, t.latest), *shown]):
            line_ = _task_line(name, rec)
            # a mapped task that failed is named by its failed instances, as the store does
            if rec.state is TaskState.FAILED and not (index == 0 and shown):
                failed.append(line_)
            if line_.seconds is not None:
                timed.append(line_)
    slowest = sorted(timed, key=lambda t: t.seconds or 0.0, reverse=True)[:SLOWEST]
    seconds = [t.seconds or 0.0 for t in timed]
    return RunDigest(
        tasks=len(summary.tasks),
        states=states,
        instances=instances,
        failed=failed[:top],
        failed_total=len(failed),
        slowest=slowest,
        timed=len(timed),
        seconds_total=sum(seconds),
        seconds_max=max(seconds, default=None),
    )


def _task_line(name: str, rec: AttemptRecord) -> TaskLine:
    from rota.store.digest import TaskLine

    seconds = None
    if rec.started_at is not None and rec.finished_at is not None:
        seconds = (rec.finished_at - rec.started_at).total_seconds()
    return TaskLine(name, rec.state, rec.try_number, seconds, rec.error_type, rec.error_message)


def _counts(counts: dict[str, int]) -> str:
    ordered = sorted(counts, key=lambda s: _ORDER.get(s, 99))
    return ", ".join(f"{counts[s]} {s}" for s in ordered)


def digest_lines(digest: RunDigest) -> list[Text]:
    """The digest's lines for stdout: counts, the slowest tasks, the time tasks took."""
    from rota.cli.console import line
    from rota.cli.runview import duration

    out = [line(f"{digest.tasks} tasks: {_counts(digest.states)}")]
    if digest.instances:
        total = sum(digest.instances.values())
        out.append(line(f"{total} mapped instances: {_counts(digest.instances)}"))
    if digest.timed:
        mean = digest.seconds_total / digest.timed
        out.append(
            line(
                (f"time in tasks: {duration(digest.seconds_total)} in all, over {digest.timed} "
                 f"that ran · mean {duration(mean)} · longest {duration(digest.seconds_max)}",
                 "grey50")
            )
        )  # fmt: skip
    if digest.slowest:
        out.append(line(("slowest:", "grey50")))
        out += [line(f"  {t.name}  ", duration(t.seconds)) for t in digest.slowest]
    return out


def failure_lines(digest: RunDigest) -> list[str]:
    """One line per failed task named in the digest (``fit[3] (attempt 2): TaskTimeout: ...``),
    then how many more failed."""
    from rota.model.safetext import safe_text

    out = []
    for t in digest.failed:
        kind = t.error_type or "error"
        first = (t.error_message or "").strip().splitlines()
        out.append(
            safe_text(f"{t.name} (attempt {t.try_number}): {kind}: {first[0] if first else ''}")
        )
    hidden = digest.failed_total - len(digest.failed)
    if hidden > 0:
        out.append(f"and {hidden} more failed")
    return out


def rest_hint(run_id: str, commands: Iterable[str]) -> str:
    """The line that says where the per-task table is."""
    return f"every task: {' or '.join(c.format(run_id=run_id) for c in commands)}"
