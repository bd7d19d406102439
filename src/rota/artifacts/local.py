"""Task outputs in a local folder: pickled, written to a temporary file, fsynced, then renamed.

The location is a pure function of (run, task, map index), never of the attempt or the clock, so a
re-run overwrites and a reader never sees a partly written file (DESIGN.md, invariant 2).
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import cloudpickle

from rota.errors import ArtifactError
from rota.home import private_dir


def output_path(root: Path, run_id: str, task_id: str, map_index: int = -1) -> Path:
    """Where the output of (*run_id*, *task_id*, *map_index*) is stored under *root*."""
    name = task_id if map_index < 0 else f"{task_id}@{map_index}"
    return root / run_id / name


def write_output(path: Path, value: Any, *, fsync: bool = True) -> int:
    """Pickle *value* to *path* atomically; return the number of bytes written.

    Raises:
        ArtifactError: the value cannot be pickled or the file cannot be written.
    """
    try:
        data = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as err:
        raise ArtifactError(f"cannot serialize the output ({type(value).__name__}): {err}") from err
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(data)


def read_output(path: Path, *, producer: str) -> Any:
    """Load the output stored at *path*, produced by task *producer*.

    Raises:
        ArtifactError: the file is missing or cannot be unpickled; the message names both.
    """
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except FileNotFoundError:
        raise ArtifactError(f"output of task {producer!r} is missing: {path}") from None
    except Exception as err:
        raise ArtifactError(f"output of task {producer!r} at {path} is unreadable: {err}") from err


class FileCheckpoint:
    """A task's checkpoint as one file: saved like an output (temp file, fsync, rename)."""

    def __init__(self, path: Path, *, producer: str) -> None:
        self.path = path
        self.producer = producer

    def save(self, obj: Any) -> None:
        """Replace the checkpoint with *obj*; a crash mid-save keeps the previous one."""
        write_output(self.path, obj)

    def load(self, default: Any = None) -> Any:
        """The last saved object, or *default* when nothing was saved yet."""
        if not self.path.exists():
            return default
        return read_output(self.path, producer=self.producer)


def checkpoint_path(root: Path, run_id: str, task_id: str, map_index: int = -1) -> Path:
    """Where the checkpoint of (*run_id*, *task_id*, *map_index*) lives under *root*."""
    return output_path(root, run_id, task_id, map_index)


class OutputCache:
    """Outputs kept in memory by the process that produced or read them, least recently used first
    out, bounded by their pickled size."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._size = 0

    def get(self, key: str) -> tuple[bool, Any]:
        """(True, value) when *key* is cached, else (False, None)."""
        item = self._items.get(key)
        if item is None:
            return False, None
        self._items.move_to_end(key)
        return True, item[0]

    def put(self, key: str, value: Any, size: int) -> None:
        """Keep *value* under *key* unless it alone exceeds the budget."""
        if size > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._size -= old[1]
        self._items[key] = (value, size)
        self._size += size
        while self._size > self.max_bytes:
            _, (_, dropped) = self._items.popitem(last=False)
            self._size -= dropped
