"""``rota runs show`` of a large run: the run's digest, then one page of its tasks as a tree.

The digest and the page are read with a fixed number of indexed queries
(:mod:`rota.store.digest`), so a run of 100,000 tasks shows as fast as one of a hundred: nothing
reads, builds or renders a row per task beyond the page.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rota.cli.main import CliContext
    from rota.engine.report import RunSummary
    from rota.store.base import RunRecord
    from rota.store.digest import RunDigest, TaskPage


def large_run(store: Any, run_id: str, offset: int) -> RunDigest | None:
    """The digest of run *run_id* when it is shown a page at a time (more than
    :data:`~rota.cli.endreport.SMALL_RUN` tasks and mapped instances, or a page past the first
    asked for)."""
    from rota.cli.endreport import SMALL_RUN

    digest: RunDigest = store.run_digest(run_id)
    size = digest.tasks + sum(digest.instances.values())
    return digest if size > SMALL_RUN or offset else None


def page_summary(run: RunRecord, page: TaskPage) -> RunSummary:
    """The summary of the page's tasks, a mapped task with its instances counted in SQL."""
    from rota.engine.report import summarize_records

    summary = summarize_records(run, page.attempts)
    for tid, counts in page.instance_counts.items():
        task = summary.tasks.get(tid)
        if task is not None:
            summary.tasks[tid] = replace(task, mapped=dict(counts))
    return summary


def show_page(
    ctx: CliContext, store: Any, run: RunRecord, digest: RunDigest, limit: int, offset: int
) -> None:
    """Print the run's header and digest, the page of tasks *offset*..*offset + limit* as a
    tree, the failed tasks named by the digest, and where the next page is."""
    from rota.cli.endreport import digest_lines, failure_lines
    from rota.cli.runview import run_header, run_tree

    page = store.task_page(run.run_id, limit, offset)
    summary = page_summary(run, page)
    now = datetime.now(UTC)
    for text in run_header(summary, now):
        ctx.console.print(text, soft_wrap=True)
    for text in digest_lines(digest):
        ctx.console.print(text, soft_wrap=True)
    for line in failure_lines(digest):
        ctx.console.print(line, style="red", highlight=False, soft_wrap=True)
    if page.task_ids:
        ctx.console.print(run_tree(summary, page.attempts, now))
    note = page_note(run.run_id, offset, len(page.task_ids), digest.tasks, limit)
    ctx.console.print(note, style="grey50", highlight=False, soft_wrap=True)


def page_note(run_id: str, offset: int, shown: int, total: int, limit: int) -> str:
    """Which tasks the page showed, and the command for the next page."""
    if shown == 0:
        return f"no tasks from {offset + 1} on ({total} tasks)"
    said = f"tasks {offset + 1}-{offset + shown} of {total}"
    if offset + shown < total:
        said += f"; next: rota runs show {run_id} --offset {offset + shown} --limit {limit}"
    return said
