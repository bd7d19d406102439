"""An attempt's log and output, read the safe way for the UI.

A log is read only from the logs folder (:mod:`rota.web.files`: no symbolic link followed, no
path outside it), as bytes the browser shows as text. An output is previewed by
:meth:`~rota.artifacts.store.ArtifactStore.peek`, which never unpickles, and only when the stored
path lies in the artifact store's root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from rota.artifacts.inline import is_inline
from rota.artifacts.store import open_artifact_store, peek_inline
from rota.errors import NotFound
from rota.model.states import TERMINAL, TaskState
from rota.store.base import AttemptRecord
from rota.web.files import Chunk, parts_inside, read_inside

FOLLOWED: Final = frozenset({TaskState.QUEUED, TaskState.RUNNING, TaskState.SENSING})


def pick_attempt(
    attempts: list[AttemptRecord], task_id: str, try_number: int | None, map_index: int
) -> AttemptRecord:
    """The attempt of *task_id* (instance *map_index*) with *try_number*, or its latest.

    Raises:
        NotFound: there is no such attempt.
    """
    mine = [a for a in attempts if a.task_id == task_id and a.map_index == map_index]
    if try_number is not None:
        mine = [a for a in mine if a.try_number == try_number]
    if not mine:
        raise NotFound(f"no such attempt of task {task_id!r}")
    return max(mine, key=lambda a: a.try_number)


def log_parts(logs: Path, rec: AttemptRecord) -> tuple[str, ...] | None:
    """Where *rec*'s log is below *logs*: its recorded path, or the one the runner gives it."""
    name = rec.task_id if rec.map_index < 0 else f"{rec.task_id}@{rec.map_index}"
    path = rec.log_path or os.path.join(logs, rec.run_id, name, f"{rec.try_number}.log")
    return parts_inside(logs, path)


def read_log(logs: Path, rec: AttemptRecord, offset: int, length: int) -> Chunk | None:
    """Bytes of *rec*'s log from *offset*; None when it has none (or it is not a plain file
    inside the logs folder)."""
    parts = log_parts(logs, rec)
    return None if parts is None else read_inside(logs, parts, offset, length)


def log_refused(logs: Path, rec: AttemptRecord) -> bool:
    """Whether *rec* has a log that cannot be read here: recorded outside the logs folder, or
    something at its path that is not a plain file (a planted link, say). A log not written yet
    is not refused: it reads as empty."""
    parts = log_parts(logs, rec)
    if parts is None:
        return True
    return os.path.lexists(os.path.join(logs, *parts))


def still_writing(rec: AttemptRecord) -> bool:
    """Whether *rec*'s log may still grow."""
    return rec.state in FOLLOWED or (rec.state not in TERMINAL and rec.finished_at is None)


def preview(artifacts_root: str, rec: AttemptRecord) -> dict[str, object]:
    """A safe preview of *rec*'s output (never unpickled).

    Raises:
        NotFound: it stored no output, or its path is not in the artifact store.
        ArtifactError: the bytes are missing, corrupt or not in the format the store names.
    """
    if not rec.output_path:
        raise NotFound(f"attempt {rec.try_number} of {rec.task_id!r} stored no output")
    uri = rec.output_path
    serializer = rec.output_serializer or "pickle"
    if is_inline(uri):
        told = peek_inline(
            uri,
            rec.output_inline or b"",
            serializer,
            producer=rec.task_id,
            content_hash=rec.output_hash,
        )
    else:
        store = open_artifact_store(artifacts_root)
        if not _inside_root(store.root, uri):
            raise NotFound(f"the output of {rec.task_id!r} is not in the artifact store")
        told = store.peek(uri, serializer, producer=rec.task_id, content_hash=rec.output_hash)
    return {
        "serializer": serializer,
        "size": rec.output_size,
        "hash": rec.output_hash,
        "pickled": told.pickled,
        "imports": list(told.imports),
        "text": told.text,
    }


def _inside_root(root: str, uri: str) -> bool:
    if "\x00" in uri:
        return False
    if "://" in root:
        return uri.startswith(root.rstrip("/") + "/") and "/../" not in uri
    parts = parts_inside(Path(root), uri)
    if parts is None:
        return False
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(uri)]) == real_root
