"""Helpers for testing flows and Rota itself: read a task's stored output back."""

from __future__ import annotations

from typing import Any

from rota.artifacts.store import open_artifact_store
from rota.engine.report import RunSummary
from rota.store.base import AttemptRecord


def read_output(rec: AttemptRecord) -> Any:
    """The value an attempt stored (None when it stored nothing).

    Raises:
        ArtifactError: the stored object is missing or does not match its content hash.
    """
    if rec.output_path is None:
        return None
    store = open_artifact_store(rec.output_path)
    return store.get(
        rec.output_path,
        rec.output_serializer or "pickle",
        producer=rec.task_id,
        content_hash=rec.output_hash,
    )


def output_of(summary: RunSummary, task_id: str) -> Any:
    """The value task *task_id* of a finished run returned."""
    return read_output(summary.tasks[task_id].latest)
