"""Checkpoints in a local folder, and the in-memory cache of outputs a worker produced or read.

A checkpoint is one file: a header line naming the BLAKE2b hash of the pickled payload, then the
payload. It is written like an output (temporary file, fsync, rename), so a crash mid-save keeps
the previous checkpoint, and the hash and the payload always travel together in one rename.
:meth:`FileCheckpoint.load` checks the hash before anything is unpickled: a truncated or
altered checkpoint fails the attempt with an error naming it instead of being loaded.

A checkpoint written before checkpoints carried a hash (a bare pickle) cannot be checked, so it is
not loaded: ``load`` warns on the attempt's log and returns the default, and the task starts over.

The location is a pure function of (run, task, map index), never of the attempt or the clock, so a
re-run overwrites and a reader never sees a partly written file (DESIGN.md, invariant 2).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Final

import cloudpickle

from rota.errors import ArtifactError
from rota.home import private_dir

MAGIC: Final = b"rota-checkpoint blake2b "
_HEADER_LEN: Final = len(MAGIC) + 128 + 1  # the hex digest of 64 bytes, then a newline


def _header(payload: bytes) -> bytes:
    return MAGIC + hashlib.blake2b(payload).hexdigest().encode() + b"\n"


def _write_atomic(path: Path, chunks: tuple[bytes, ...]) -> None:
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileCheckpoint:
    """A task's checkpoint as one hashed file: saved like an output (temp file, fsync, rename)."""

    def __init__(self, path: Path, *, producer: str) -> None:
        self.path = path
        self.producer = producer

    def save(self, obj: Any) -> None:
        """Replace the checkpoint with *obj*; a crash mid-save keeps the previous one.

        Raises:
            ArtifactError: *obj* cannot be pickled.
        """
        try:
            payload = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:
            raise ArtifactError(
                f"cannot checkpoint task {self.producer!r} ({type(obj).__name__}): {err}"
            ) from err
        _write_atomic(self.path, (_header(payload), payload))

    def load(self, default: Any = None) -> Any:
        """The last saved object, or *default* when nothing (checkable) was saved yet.

        Raises:
            ArtifactError: the checkpoint is truncated or altered (its bytes do not match its
                hash), or cannot be unpickled; the one-line message names it.
        """
        data = self._read()
        if data is None:
            return default
        if data[:1] == b"\x80" and not data.startswith(MAGIC):  # a bare pickle: nothing to check
            print(
                f"[rota] checkpoint {self.path} of task {self.producer!r} has no content hash "
                "(written by an older Rota), so it is not loaded: the task starts over",
                file=sys.stderr,
            )
            return default
        payload = self._checked(data)
        try:
            return pickle.loads(payload)
        except Exception as err:
            raise ArtifactError(
                f"checkpoint {self.path} of task {self.producer!r} is unreadable: "
                f"{type(err).__name__}: {err}"
            ) from err

    def _read(self) -> bytes | None:
        """The checkpoint's bytes, or None when nothing was saved yet."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def _checked(self, data: bytes) -> bytes:
        """The payload of *data*, once its hash matches the one in its header."""
        header, payload = data[:_HEADER_LEN], data[_HEADER_LEN:]
        recorded = header[len(MAGIC) : -1]
        if not (header.startswith(MAGIC) and header.endswith(b"\n") and _is_digest(recorded)):
            why = "its header is missing, cut short or malformed"
        else:
            got = hashlib.blake2b(payload).hexdigest()
            if got == recorded.decode():
                return payload
            why = f"content hash {got[:16]}… is not the recorded {recorded[:16].decode()}…"
        raise ArtifactError(
            f"checkpoint {self.path} of task {self.producer!r} is corrupt ({why}); it was not "
            "loaded: delete it to start the task over"
        )


def _is_digest(text: bytes) -> bool:
    return len(text) == 128 and all(c in b"0123456789abcdef" for c in text)


def checkpoint_path(root: Path, run_id: str, task_id: str, map_index: int = -1) -> Path:
    """Where the checkpoint of (*run_id*, *task_id*, *map_index*) lives under *root*."""
    name = task_id if map_index < 0 else f"{task_id}@{map_index}"
    return root / run_id / name


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
