"""Naming a run as a person does: its whole id, any unique prefix of it, or the newest run.

Every command that takes a run id resolves it here, so ``rota runs show 20260101T03`` and
``rota resume --last churn`` mean the same everywhere. An exact id always wins, even when it is
also the prefix of a longer one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from rota.errors import AmbiguousRunId, NotFound
from rota.model.states import RunState
from rota.store.base import RunRecord, Store

SHOWN: Final = 5
"""Candidates an ambiguous prefix names."""

UNFINISHED: Final = (RunState.QUEUED, RunState.RUNNING, RunState.FAILED, RunState.INTERRUPTED)
"""States of a run that a resume can go on with (all but success)."""


def find_run(store: Store, text: str) -> RunRecord:
    """The run whose id is *text*, or the one run whose id starts with it.

    Raises:
        NotFound: no run's id is or starts with *text*.
        AmbiguousRunId: several runs' ids start with *text* (the message names some).
    """
    try:
        return store.get_run(text)
    except NotFound:
        pass
    found = store.run_ids_with_prefix(text, limit=SHOWN + 1) if text else []
    if not found:
        raise NotFound(f"no run {text!r} in the store (rota runs list shows the runs)")
    if len(found) > 1:
        names = ", ".join(found[:SHOWN]) + (" and more" if len(found) > SHOWN else "")
        raise AmbiguousRunId(
            f"run id prefix {text!r} matches several runs: {names}; give more of the id", found
        )
    return store.get_run(found[0])


def newest_run(
    store: Store, flow: str | None, states: Sequence[RunState] | None = None
) -> RunRecord:
    """The newest run (of *flow* when given; in one of *states* when given).

    Raises:
        NotFound: there is no such run (the message says which was looked for).
    """
    found = store.newest_run_id(flow, states)
    if found is None:
        of = f" of flow {flow!r}" if flow is not None else ""
        which = "unfinished run" if states == UNFINISHED else "run"
        raise NotFound(f"there is no {which}{of} in the store")
    return store.get_run(found)
