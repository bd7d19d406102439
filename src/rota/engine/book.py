"""What the run loop knows of its run's attempts, shared with its helpers (cache, mapping, ...).

:class:`RunBook` holds, per key (task id, map index), the current attempt and its state, the
tries counted for retry policies, and per task the stored output, its length and content hash;
and the changes queued for the next commit. :meth:`RunBook.change` is the one place a state
change is recorded. The helpers of the loop take this book and the few callables they need, so
none of them imports the loop (engine/loop.py), and each costs O(1) per task it handles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rota.engine.writer import Hook
from rota.executors.base import StoredRef
from rota.model.states import TaskState
from rota.store.base import AttemptRecord, Change

Key = tuple[str, int]
"""(task id, map index): -1 for a plain task or a mapped task as a whole, 0..n-1 an instance."""
Output = StoredRef | None | tuple[StoredRef | None, ...]
"""A task's stored output: one reference, or one per instance of a mapped task."""
Settled = Callable[[str, TaskState], None]
"""Told that a plain task or a mapped task as a whole ended (its output, if any, is booked):
counts it for its downstreams, and acts on what that decides."""


@dataclass(slots=True, eq=False)
class RunBook:
    """The attempts of one run as the loop knows them, and the changes not yet queued."""

    run_id: str
    attempt: dict[Key, AttemptRecord] = field(default_factory=dict)
    state: dict[Key, TaskState] = field(default_factory=dict)
    tries: dict[Key, int] = field(default_factory=dict)
    """Attempts that started, per key: what retry policies count (a crash before a worker
    began an attempt uses up no retry)."""
    outputs: dict[str, Output] = field(default_factory=dict)
    lengths: dict[str, int | None] = field(default_factory=dict)
    hashes: dict[str, str | None] = field(default_factory=dict)
    pending: list[Change] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)
    counts: Counter[TaskState] = field(default_factory=Counter)
    """How many plain tasks (and mapped tasks as a whole) are in each state: what a progress
    display shows, kept up to date by every change rather than counted over the run."""

    def load(self, key: Key, rec: AttemptRecord) -> None:
        """Make *rec* (read from the store, or just added) the current attempt of *key*."""
        self.attempt[key] = rec
        self.moved(key, rec.state)

    def moved(self, key: Key, new: TaskState) -> None:
        """Set the state the loop knows *key* in (what the store has, or will once committed)."""
        if key[1] < 0:
            old = self.state.get(key)
            if old is not None:
                self.counts[old] -= 1
            self.counts[new] += 1
        self.state[key] = new

    def change(self, key: Key, new: TaskState, fields: dict[str, Any]) -> None:
        """Queue the move of *key*'s current attempt to *new*, setting *fields*."""
        rec = self.attempt[key]
        self.pending.append(Change(rec.id, self.state[key], new, fields))
        self.moved(key, new)

    def booked(
        self, tid: str, ref: StoredRef | None, length: int | None, hash_: str | None
    ) -> None:
        """Keep plain task *tid*'s output: its reference, length and content hash."""
        self.outputs[tid] = ref
        self.lengths[tid] = length
        self.hashes[tid] = hash_

    def take(self) -> tuple[list[Change], list[Hook]]:
        """The changes and hooks queued so far, handed over (the book keeps none)."""
        out = (self.pending, self.hooks)
        self.pending, self.hooks = [], []
        return out
