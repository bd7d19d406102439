"""What workers of a cluster share through the artifact store besides outputs: execution claims
and checkpoints.

* A **claim** is an empty marker created exclusively, once per attempt: the first execution of an
  attempt makes it, and an execution that finds it made already knows that it is a second one (a
  cluster re-ran the attempt after its worker was lost) and does not run the task. On a local or
  shared folder the marker is ``open(O_CREAT | O_EXCL)``; on an object store a conditional PUT
  (``If-None-Match: *``), which S3 refuses when the key exists.
* A **checkpoint** (``ctx.checkpoint``) at a URL is one object holding the same hashed bytes as a
  :class:`~rota.artifacts.local.FileCheckpoint`, replaced by one PUT (atomic on S3), so a retry on
  another worker resumes from it.

Both live under hidden names (``.claims/``, ``.checkpoints/``) beside the runs' outputs: a run id
never starts with a dot, so they cannot collide with an output.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path
from typing import Any

import cloudpickle

from rota.artifacts.local import FileCheckpoint, _header
from rota.artifacts.store import ArtifactStore, open_artifact_store
from rota.errors import ArtifactError
from rota.home import private_dir

CLAIMS = ".claims"
CHECKPOINTS = ".checkpoints"


def claim_name(run_id: str, attempt_id: int) -> str:
    """The claim of attempt *attempt_id* of *run_id*, relative to the artifact root."""
    return f"{CLAIMS}/{run_id}/{attempt_id}"


def claim(store: ArtifactStore, name: str, holder: str) -> bool:
    """Create the marker *name* under *store*'s root holding *holder*; False if it exists.

    Raises:
        OSError: the marker cannot be created for another reason (the store is unreachable).
    """
    if store.fs_is_local:
        path = Path(store.root) / name
        private_dir(path.parent)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(holder)
        return True
    key = f"{store.root}/{name}"
    try:
        store.fs.pipe_file(key, holder.encode(), mode="create")
    except FileExistsError:
        return False
    return True


def checkpoint_url(artifacts: str, run_id: str, name: str) -> str:
    """Where the checkpoint of task instance *name* of *run_id* lives in the artifact store."""
    return f"{artifacts.rstrip('/')}/{CHECKPOINTS}/{run_id}/{name}"


class UrlCheckpoint(FileCheckpoint):
    """A :class:`FileCheckpoint` at a URL of the artifact store (``s3://...``): one hashed object,
    replaced by a single PUT, read and checked before it is unpickled."""

    def __init__(self, url: str, *, producer: str) -> None:
        super().__init__(Path(url), producer=producer)
        self.url = url
        self._store = open_artifact_store(url)

    def save(self, obj: Any) -> None:
        """Replace the checkpoint with *obj* (one PUT: a reader sees the old one or the new one).

        Raises:
            ArtifactError: *obj* cannot be pickled, or the object store refused the write.
        """
        try:
            payload = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:
            raise ArtifactError(
                f"cannot checkpoint task {self.producer!r} ({type(obj).__name__}): {err}"
            ) from err
        try:
            self._store.fs.pipe_file(self.url, _header(payload) + payload)
        except OSError as err:
            raise ArtifactError(f"cannot save checkpoint {self.url}: {err}") from err

    def _read(self) -> bytes | None:
        with contextlib.suppress(FileNotFoundError):
            return bytes(self._store.fs.cat_file(self.url))
        return None


def open_checkpoint(location: str, producer: str) -> FileCheckpoint:
    """The checkpoint at *location*: a local path, or a URL of an object store."""
    if "://" in location and not location.startswith("file://"):
        return UrlCheckpoint(location, producer=producer)
    return FileCheckpoint(Path(location.removeprefix("file://")), producer=producer)
