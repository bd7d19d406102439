"""What a killed runner's attempts left running outside its workers, deleted when a run resumes.

A pod task's pod lives on a cluster, not in the worker process: a runner killed with SIGKILL
(whose workers die with it) leaves the pod running. Its labels carry the run, so the runner that
resumes the run, which owns it now, deletes those pods before it runs anything again.
"""

from __future__ import annotations

import logging

from rota.model.dag import Dag
from rota.operators.base import LeavesLeftovers

_log = logging.getLogger(__name__)


def clear_leftovers(dag: Dag, run_id: str) -> list[str]:
    """Ask each operator of *dag* that can leave something behind to delete run *run_id*'s.

    A backend that cannot be reached is logged, not raised: the resume goes on, and whatever is
    left is the operator's to find again at the next resume.

    Returns:
        The names of what was deleted.
    """
    deleted: list[str] = []
    for spec in dag.tasks.values():
        if not isinstance(spec.op, LeavesLeftovers):
            continue
        try:
            deleted.extend(spec.op.clear_leftovers(run_id))
        except Exception as err:  # a cluster that does not answer must not block the resume
            _log.warning("task %s: leftovers of run %s not cleared: %s", spec.id, run_id, err)
    return deleted
