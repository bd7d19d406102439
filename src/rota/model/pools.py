"""Pools and priorities as a task declares them, validated when the flow is defined.

A pool is a named number of slots shared by every run (the store keeps the pools; see
``rota pools``). A task takes ``pool_slots`` slots of its ``pool`` while it is queued for a worker
or running, as in Airflow: a task that names no pool uses ``default_pool`` (128 slots unless
resized). Ready tasks are ordered by their effective priority weight
(:mod:`rota.model.priority`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from rota.errors import DefinitionError

DEFAULT_POOL: Final = "default_pool"
"""The pool of a task that names none (Airflow's name)."""

DEFAULT_POOL_SLOTS: Final = 128
"""The slots ``default_pool`` is created with (Airflow's default)."""

UNLIMITED: Final = -1
"""Slots of a pool without a limit (Airflow's ``-1``)."""

POOL_NAME_MAX: Final = 256
_POOL_NAME: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

SLOTS_MAX: Final = 2**31 - 1
"""The largest slot count or pool size (the store keeps them as 32-bit integers)."""


def check_pool_name(name: object, *, where: str = "pool") -> str:
    """Return *name* if it can name a pool.

    Raises:
        DefinitionError: not a string of letters, digits, ``_``, ``.``, ``-`` (first a letter, a
            digit or ``_``), or longer than POOL_NAME_MAX.
    """
    if not isinstance(name, str) or not _POOL_NAME.fullmatch(name) or len(name) > POOL_NAME_MAX:
        shown = repr(name) if len(repr(name)) <= 60 else f"{repr(name)[:50]}..."
        raise DefinitionError(
            f"{where}: invalid pool name {shown}: use letters, digits, '_', '.', '-' (first a "
            f"letter, a digit or '_'; at most {POOL_NAME_MAX} characters)"
        )
    return name


def check_count(value: object, *, what: str, low: int) -> int:
    """Return *value* if it is an int between *low* and SLOTS_MAX.

    Raises:
        DefinitionError: it is not (a bool is not an int here).
    """
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= SLOTS_MAX:
        raise DefinitionError(f"{what} must be an int from {low} to {SLOTS_MAX}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class PoolUse:
    """The pool a task takes slots of, and how many (Airflow's ``pool`` and ``pool_slots``)."""

    pool: str = DEFAULT_POOL
    slots: int = 1

    @classmethod
    def of(cls, task_id: str, pool: object, slots: object) -> PoolUse:
        """The validated pool use of task *task_id* (``pool=None``: ``default_pool``).

        Raises:
            DefinitionError: a bad pool name, or slots that are not an int >= 1.
        """
        where = f"task {task_id!r}"
        name = DEFAULT_POOL if pool is None else check_pool_name(pool, where=where)
        return cls(name, check_count(slots, what=f"{where}: pool_slots", low=1))


DEFAULT_POOL_USE: Final = PoolUse()
