"""What a dead runner can leave outside its own processes (a container, a pod), and removing it.

An operator that starts something its worker's death does not end implements
:class:`LeavesLeftovers`; before a run is driven again (a resume, or a dead runner's run taken
over) the engine calls :func:`remove_run_leftovers` on the run's operators, when nothing of the
run is running.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class LeavesLeftovers(Protocol):
    """An operator whose attempts can leave something running after their runner died."""

    def leftovers_scope(self) -> str:
        """Operators with equal scopes find the same leftovers: one of them is asked."""

    def remove_leftovers(self, run_id: str) -> list[str]:
        """Remove what attempts of run *run_id* left; the names of what was removed.

        Raises:
            Exception: the leftovers could not be listed or removed (reported, not fatal).
        """


def remove_run_leftovers(ops: Iterable[object], run_id: str) -> list[str]:
    """Ask one operator per scope among *ops* to remove run *run_id*'s leftovers.

    A failure is printed as one line on stderr and does not stop the resume: the leftover then
    stays for a person to remove.
    """
    removed: list[str] = []
    seen: set[str] = set()
    for op in ops:
        if not isinstance(op, LeavesLeftovers) or op.leftovers_scope() in seen:
            continue
        seen.add(op.leftovers_scope())
        try:
            removed += op.remove_leftovers(run_id)
        except Exception as err:
            print(f"rota: could not remove what run {run_id} left: {err}", file=sys.stderr)
    return removed


_LIVE: dict[int, Callable[[], None]] = {}
"""Ends of what attempts running in this process started outside it, by a key of their own."""


@contextlib.contextmanager
def ended_with_process(end: Callable[[], None]) -> Iterator[None]:
    """While the block runs, *end* is called if this process is ended (:func:`end_live`)."""
    key = id(end)
    _LIVE[key] = end
    try:
        yield
    finally:
        _LIVE.pop(key, None)


def end_live() -> None:
    """End what the attempts of this process started outside it (a container): a worker calls
    it when it is ended for a timeout, a cancel or its engine's death, before it dies, so the
    attempt leaves nothing running. Each failure is ignored (a reaper or a resume remains)."""
    for end in list(_LIVE.values()):
        with contextlib.suppress(Exception):
            end()
