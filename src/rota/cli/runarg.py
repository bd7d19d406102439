"""The RUN_ID argument every command shares: a whole id, a unique prefix, or ``--last [FLOW]``.

``rota runs show 20260101T03``, ``rota runs show --last``, ``rota tasks logs --last churn fit``
and ``rota tasks logs fit --last`` all work: with ``--last`` the run id is left out, so the
command's other arguments move up by one (a ``--last`` whose value is the only other argument,
``tasks logs --last fit``, gave that argument, not a flow). Shell completion offers run ids
(newest first) and flow names from the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click
from click.shell_completion import CompletionItem

if TYPE_CHECKING:
    from rota.model.states import RunState
    from rota.store.base import RunRecord, Store

F = TypeVar("F", bound=Callable[..., Any])

ANY_FLOW: Final = "\x00"
"""The value of a ``--last`` given without a flow: the newest run of any flow."""

_COMPLETIONS: Final = 50


def _open_for_completion(ctx: click.Context) -> Any:
    """The store, opened only if it exists already (completing never creates a home), or None."""
    from rota.cli.main import CliContext
    from rota.store.connect import sqlite_file
    from rota.store.sql import open_store

    obj = ctx.find_root().obj
    if not isinstance(obj, CliContext):
        return None
    settings = obj.settings
    path = sqlite_file(settings.database_url)
    if path is not None and not path.is_file():
        return None
    return open_store(settings.database_url, connect_timeout=2)


def complete_run_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Run ids starting with *incomplete*, newest first, each described by its flow and state."""
    del param
    try:
        store = _open_for_completion(ctx)
        if store is None:
            return []
        with store:
            ids = store.run_ids_with_prefix(incomplete, limit=_COMPLETIONS)
            runs = [store.get_run(run_id) for run_id in ids]
    except Exception:  # a shell completing a word must never see an error or a traceback
        return []
    return [CompletionItem(r.run_id, help=f"{r.flow} {r.state.value}") for r in runs]


def complete_flow_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Names of the flows the store knows that start with *incomplete*."""
    del param
    try:
        store = _open_for_completion(ctx)
        if store is None:
            return []
        with store:
            names = store.flow_names(incomplete, limit=_COMPLETIONS)
    except Exception:  # as above: completion is best effort, silently
        return []
    return [CompletionItem(name) for name in names]


_LAST_HELP = "The newest run (of FLOW, when given) instead of a RUN_ID."
_RESUME_LAST_HELP = "The newest unfinished run (of FLOW, when given) instead of a RUN_ID."


def run_argument(*, task: bool = False, resume: bool = False) -> Callable[[F], F]:
    """Give a command its RUN_ID argument (then TASK_ID, with *task*) and ``--last [FLOW]``.

    The command receives ``run_id``, ``last`` (and ``task_id``); pass them to :func:`pick_run`
    (and :func:`task_after`). With *resume*, ``--last`` names the newest unfinished run.
    """

    def wrap(fn: F) -> F:
        fn = click.option(
            "--last",
            is_flag=False,
            flag_value=ANY_FLOW,
            default=None,
            metavar="[FLOW]",
            shell_complete=complete_flow_names,
            help=_RESUME_LAST_HELP if resume else _LAST_HELP,
        )(fn)
        if task:
            fn = click.argument("task_id", required=False, metavar="TASK_ID")(fn)
        return click.argument(
            "run_id",
            required=False,
            metavar="(RUN_ID|--last [FLOW])",
            shell_complete=complete_run_ids,
        )(fn)

    return wrap


def task_after(
    run_id: str | None, task_id: str | None, last: str | None
) -> tuple[str | None, str, str | None]:
    """The run id, task and ``--last`` of ``RUN_ID TASK_ID`` or ``--last [FLOW] TASK_ID``.

    Returns:
        ``(run_id, task, last)`` for :func:`pick_run`: the run id is None with ``--last``.

    Raises:
        click.UsageError: the task is missing, or both a RUN_ID and --last were given.
    """
    if last is None:
        if run_id is None or task_id is None:
            raise click.UsageError("give RUN_ID TASK_ID (or --last [FLOW] TASK_ID)")
        return run_id, task_id, None
    if task_id is not None:
        raise click.UsageError("give RUN_ID or --last, not both")
    if run_id is not None:
        return None, run_id, last
    if last == ANY_FLOW:
        raise click.UsageError("give the task: --last [FLOW] TASK_ID")
    return None, last, ANY_FLOW  # `--last fit`: its value was the task, not a flow


def pick_run(
    store: Store,
    run_id: str | None,
    last: str | None,
    *,
    states: Sequence[RunState] | None = None,
) -> RunRecord:
    """The run named by RUN_ID (whole or a unique prefix) or by ``--last [FLOW]``.

    Raises:
        click.UsageError: neither or both were given.
        NotFound: no such run.
        AmbiguousRunId: the prefix matches several runs.
    """
    from rota.engine.runref import find_run, newest_run

    if (run_id is None) == (last is None):
        raise click.UsageError("give a RUN_ID (or a unique prefix of one) or --last [FLOW]")
    if run_id is not None:
        return find_run(store, run_id)
    return newest_run(store, None if last == ANY_FLOW else last, states)
