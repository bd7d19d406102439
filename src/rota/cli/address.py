"""Naming a task, or one instance of a mapped task, on the command line: ``fit``, ``fit[3]``,
``fit@3``.

Task ids hold only letters, digits, ``_``, ``.`` and ``-``, so ``[N]`` and ``@N`` cannot be part
of one. ``fit[3]`` is what ``rota runs show`` prints; ``fit@3`` needs no quotes in any shell
(zsh reads an unquoted ``fit[3]`` as a pattern).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from rota.errors import NotFound, UserError
from rota.model.states import TaskState

if TYPE_CHECKING:
    from rota.store.base import AttemptRecord

_ADDRESS: Final = re.compile(r"^(?P<task>[^\[\]@]+)(?:\[(?P<a>\d+)\]|@(?P<b>\d+))?$")


@dataclass(frozen=True, slots=True)
class TaskAddress:
    """A task (``index`` None) or instance ``index`` of a mapped task."""

    task_id: str
    index: int | None = None

    @property
    def map_index(self) -> int:
        """The store's map index: -1 for a task (or a mapped task's own row)."""
        return -1 if self.index is None else self.index

    def __str__(self) -> str:
        return self.task_id if self.index is None else f"{self.task_id}[{self.index}]"


def parse_task(text: str) -> TaskAddress:
    """``fit``, ``fit[3]`` or ``fit@3``.

    Raises:
        UserError: anything else (``fit[x]``, ``fit[3``).
    """
    found = _ADDRESS.match(text)
    if found is None:
        raise UserError(f"not a task or instance: {text!r} (write TASK, TASK[N] or TASK@N)")
    index = found.group("a") or found.group("b")
    return TaskAddress(found.group("task"), None if index is None else int(index))


def attempts_of(
    records: Iterable[AttemptRecord], run_id: str, address: TaskAddress, *, instance: bool
) -> list[AttemptRecord]:
    """The attempts of *address* in run *run_id*, oldest first.

    With *instance*, a mapped task named without an index is refused with the instances to name
    (its own row has no log and no output of its own).

    Raises:
        NotFound: the run has no such task or instance (the message lists what it has).
        UserError: *instance* and *address* names a mapped task as a whole.
    """
    records = list(records)
    mine = [r for r in records if r.task_id == address.task_id]
    if not mine:
        tasks = sorted({r.task_id for r in records})
        shown = ", ".join(tasks[:20]) + (f" and {len(tasks) - 20} more" if len(tasks) > 20 else "")
        raise NotFound(f"run {run_id} has no task {address.task_id!r} (its tasks: {shown})")
    indexes = sorted({r.map_index for r in mine if r.map_index >= 0})
    if address.index is None and indexes and instance:
        raise UserError(_name_an_instance(address.task_id, mine, indexes))
    found = [r for r in mine if r.map_index == address.map_index]
    if not found:
        raise NotFound(
            f"task {address.task_id!r} of run {run_id} has no instance {address.index} "
            f"({_instances(indexes)})"
        )
    return sorted(found, key=lambda r: r.try_number)


def _instances(indexes: list[int]) -> str:
    if not indexes:
        return "it is not mapped"
    return f"its instances: {indexes[0]}..{indexes[-1]}" if len(indexes) > 1 else "its instance: 0"


def _name_an_instance(task_id: str, mine: list[AttemptRecord], indexes: list[int]) -> str:
    latest: dict[int, AttemptRecord] = {}
    for rec in mine:
        if rec.map_index >= 0 and rec.try_number >= latest.get(rec.map_index, rec).try_number:
            latest[rec.map_index] = rec
    failed = [i for i in indexes if latest[i].state is TaskState.FAILED]
    example = failed[0] if failed else indexes[0]
    which = f"; failed: {', '.join(map(str, failed[:10]))}" if failed else ""
    return (
        f"task {task_id!r} is mapped ({len(indexes)} instances{which}): name one, "
        f"e.g. {task_id}[{example}] or {task_id}@{example}"
    )
