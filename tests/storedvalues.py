"""What a run stored as a task's output, read from the SQLite store in a ROTA_HOME, whether its
bytes are in the attempt's row (a small output) or in a file under the home's artifacts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any


def stored_json(home: Path, run_id: str, task: str) -> Any:
    """The JSON output of *task*'s latest attempt in *run_id* (kept inline or in a file)."""
    with sqlite3.connect(home / "rota.db") as db:
        row = db.execute(
            "SELECT output_path, output_inline FROM task_attempts"
            " WHERE run_id = ? AND task_id = ? ORDER BY try_number DESC LIMIT 1",
            (run_id, task),
        ).fetchone()
    assert row is not None and row[0] is not None, f"{task} stored no output"
    path, inline = row
    data = inline if inline is not None else Path(path).read_bytes()
    return json.loads(data)
