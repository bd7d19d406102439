"""The batch writer after close: a flush never waits for a thread that has stopped, and a run
interrupted while its end was being committed is not marked interrupted afterwards."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from rota.engine.writer import BatchWriter
from rota.model.states import RunState
from rota.store.base import NewTask, RunChange
from rota.store.sql import open_store

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_flush_after_close_returns_instead_of_waiting_forever(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/rota.db") as store:
        run = store.create_run("r1", "f", {}, [NewTask("t", "python", "h")], T0)
        writer = BatchWriter(store, lambda: T0)
        writer.put([], [RunChange(run.run_id, RunState.QUEUED, RunState.RUNNING, T0)])
        writer.close()
        assert writer.closed
        writer.put([], [RunChange(run.run_id, RunState.RUNNING, RunState.INTERRUPTED, T0)])
        done = threading.Event()
        closer = threading.Thread(target=lambda: (writer.close(), done.set()), daemon=True)
        closer.start()
        assert done.wait(5), "close() after close() hung on a stopped writer thread"
        assert store.get_run(run.run_id).state is RunState.RUNNING, "nothing written after close"
