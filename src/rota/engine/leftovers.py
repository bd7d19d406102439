"""What a killed runner's attempts left running outside its workers, removed before the run is
driven again.

A container task's container and a pod task's pod do not live in the worker's process group: a
runner killed with SIGKILL (whose workers die with it) leaves them running. They carry labels
with the run, so the runner that owns the run next (``rota resume``, or a dead runner's run
taken over) asks each operator of the flow that can leave something behind
(:class:`rota.operators.base.LeavesLeftovers`) to remove them, before it runs anything again.
"""

from __future__ import annotations

import logging

from rota.model.dag import Dag
from rota.operators.base import LeavesLeftovers

_log = logging.getLogger(__name__)


def remove_leftovers(dag: Dag, run_id: str) -> list[str]:
    """Ask one operator of *dag* per leftovers scope to remove run *run_id*'s leftovers.

    A runtime or cluster that cannot be reached is logged, not raised: the run goes on, and
    whatever is left is found again at the next resume (or removed by a person).

    Returns:
        The names of what was removed.
    """
    removed: list[str] = []
    seen: set[str] = set()
    for spec in dag.tasks.values():
        op = spec.op
        if not isinstance(op, LeavesLeftovers) or op.leftovers_scope() in seen:
            continue
        seen.add(op.leftovers_scope())
        try:
            removed.extend(op.remove_leftovers(run_id))
        except Exception as err:  # a cluster that does not answer must not block the resume
            _log.warning("task %s: leftovers of run %s not removed: %s", spec.id, run_id, err)
    return removed
