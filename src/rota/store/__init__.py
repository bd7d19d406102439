"""Everything durable about runs: the Store API and its SQL implementation."""

from rota.store.base import (
    AttemptRecord,
    Change,
    FlowRecord,
    NewAttempt,
    NewTask,
    RunChange,
    RunRecord,
    Store,
)

__all__ = [
    "AttemptRecord",
    "Change",
    "FlowRecord",
    "NewAttempt",
    "NewTask",
    "RunChange",
    "RunRecord",
    "Store",
]
