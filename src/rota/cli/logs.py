"""``rota tasks logs``: what an attempt printed, and ``-f`` to follow one while it runs.

Every attempt's log is written while the attempt runs (``rota.executors.logsink``) and the store
names it from the moment a worker begins the attempt, so a log can be read at any time. Following
reads what was added since the last look, a few times a second, and ends when the attempt does:
when it reaches a state no longer its own (success, failed, up_for_retry, skipped, interrupted,
...), or when nobody drives its run any more (the run ended, or its runner died).
"""

from __future__ import annotations

import codecs
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

from rota.cli.address import TaskAddress, attempts_of, parse_task
from rota.cli.commands import tasks_group
from rota.cli.main import CliContext, open_store
from rota.cli.runarg import pick_run, run_argument, task_after
from rota.errors import NotFound
from rota.model.safetext import safe_text
from rota.model.states import RunState, TaskState

if TYPE_CHECKING:
    from rota.store.base import AttemptRecord, RunRecord, Store

LIVE: Final = frozenset(
    {TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING, TaskState.SENSING}
)
"""States of an attempt that may still print (a sensor between pokes will poke again)."""

READ_EVERY: Final = 0.2
"""Seconds between looks at a followed log."""

STATE_EVERY: Final = 1.0
"""Seconds between looks at the followed attempt's state in the store."""

STALE_AFTER: Final = timedelta(seconds=30)
"""A runner whose heartbeat is older than this is taken for dead (as ``RunnerOptions``)."""

_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)


@tasks_group.command("logs")
@run_argument(task=True)
@click.option("--attempt", type=click.IntRange(min=1), help="Attempt number (default: the latest).")
@click.option(
    "-f", "--follow", is_flag=True, help="Print the log as it grows, until the attempt ends."
)
@click.option("--raw", is_flag=True, help="Print the log as stored, terminal escapes included.")
@click.pass_obj
def tasks_logs(
    ctx: CliContext,
    run_id: str | None,
    task_id: str | None,
    last: str | None,
    attempt: int | None,
    follow: bool,
    raw: bool,
) -> None:
    """Print what TASK_ID printed (stdout and stderr) in RUN_ID.

    RUN_ID may be any unique prefix of a run id, or --last [FLOW] the newest run. TASK_ID[N]
    (or TASK_ID@N, which needs no quotes in zsh) names instance N of a mapped task. Control
    characters in the log (ESC, CR, ...) are shown as escapes such as \\x1b, so a log cannot
    act on the terminal; --raw prints the bytes as the task wrote them. With -f, what the
    attempt prints is shown as it prints it, until the attempt ends (or its runner dies).

    \b
    Examples:
      rota tasks logs 20260101T0300 train
      rota tasks logs --last churn 'fit[3]' --attempt 1
      rota tasks logs --last fit@3 -f
    """
    run_id, task, last = task_after(run_id, task_id, last)
    address = parse_task(task)
    with open_store(ctx.settings) as store:
        run = pick_run(store, run_id, last)
        rec = _attempt(store.attempts(run.run_id), run.run_id, address, attempt)
        printer = _Printer(raw)
        if follow:
            rec = _follow(store, rec, printer)
    if follow:
        _say_end(ctx, rec, str(address))
        return
    if not printer.read(rec.log_path):
        ctx.err.print(
            f"(attempt {rec.try_number} of {address} printed nothing; state {rec.state.value})"
        )
    printer.finish()


def _attempt(
    records: list[AttemptRecord], run_id: str, address: TaskAddress, attempt: int | None
) -> AttemptRecord:
    """The attempt of *address* to show: number *attempt*, or the latest.

    Raises:
        NotFound: the run has no such task, instance or attempt.
        UserError: *address* names a mapped task as a whole (its instances have the logs).
    """
    recs = attempts_of(records, run_id, address, instance=True)
    if attempt is None:
        return recs[-1]
    found = [a for a in recs if a.try_number == attempt]
    if not found:
        tries = ", ".join(str(a.try_number) for a in recs)
        raise NotFound(f"{address} of run {run_id} has no attempt {attempt} (attempts: {tries})")
    return found[0]


def _follow(store: Store, rec: AttemptRecord, printer: _Printer) -> AttemptRecord:
    """Print the log of *rec* as it grows until the attempt ends; return its last record."""
    checked = float("-inf")
    while True:
        now = time.monotonic()
        over = False
        if now - checked >= STATE_EVERY:
            checked = now
            rec, over = _look(store, rec)
        printer.read(rec.log_path)  # once the attempt has ended, its log is complete
        if over:
            printer.finish()
            return rec
        time.sleep(READ_EVERY)


def _look(store: Store, rec: AttemptRecord) -> tuple[AttemptRecord, bool]:
    """The attempt *rec* as the store has it now, and whether it has ended (or nobody drives its
    run any more, so it will not go on)."""
    run = store.get_run(rec.run_id)
    fresh = next((a for a in store.attempts(rec.run_id) if a.id == rec.id), rec)
    return fresh, fresh.state not in LIVE or not _driven(run)


def _driven(run: RunRecord) -> bool:
    """Whether someone drives *run* or may yet: it is queued, or its runner is alive."""
    from rota.engine.lease import RunnerId, provably_dead

    if run.state is RunState.QUEUED:
        return True
    if run.state is not RunState.RUNNING or run.owner is None:
        return False
    owner = RunnerId.parse(run.owner)
    if owner is not None and provably_dead(owner):
        return False
    beat = run.heartbeat_at
    return beat is not None and datetime.now(UTC) - beat < STALE_AFTER


def _say_end(ctx: CliContext, rec: AttemptRecord, task_id: str) -> None:
    how = rec.state.value
    if rec.state in LIVE:
        how = f"{how}, but its runner is gone (rota resume {rec.run_id} goes on)"
    ctx.err.print(f"(attempt {rec.try_number} of {task_id}: {how})", soft_wrap=True)


class _Printer:
    """Prints a log from where it last stopped: whole lines as safe text, or the bytes (raw)."""

    def __init__(self, raw: bool) -> None:
        self._raw = raw
        self._fd: int | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._line = ""
        self.shown = 0

    def read(self, path: str | None) -> bool:
        """Print what the log at *path* holds beyond what was printed; whether it holds anything."""
        if self._fd is None:
            if path is None:
                return False
            try:
                self._fd = os.open(Path(path), os.O_RDONLY | _NOFOLLOW)
            except FileNotFoundError:
                return False
        while data := os.read(self._fd, 1 << 16):
            self.shown += len(data)
            self._put(data)
        return self.shown > 0

    def _put(self, data: bytes) -> None:
        if self._raw:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        text = self._line + self._decoder.decode(data)
        cut = text.rfind("\n") + 1
        self._line = text[cut:]
        self._echo(text[:cut])

    def finish(self) -> None:
        """Print the last line, ended or not; close the log."""
        if not self._raw:
            self._echo(self._line + self._decoder.decode(b"", final=True))
            self._line = ""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def _echo(text: str) -> None:
        if text:
            click.echo(safe_text(text, multiline=True), nl=False)
            sys.stdout.flush()
