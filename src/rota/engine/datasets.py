"""Recording dataset versions and reads when tasks succeed (called after the commit)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from rota.model.dag import TaskSpec
from rota.store.base import Store

_CHUNK = 1 << 20


def content_hash(uri: str) -> str | None:
    """BLAKE2b of the bytes at *uri* when it names a readable file or object, else None."""
    try:
        import fsspec

        with fsspec.open(uri, "rb") as fh:
            h = hashlib.blake2b(digest_size=16)
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
            return h.hexdigest()
    except Exception:  # not a file-like URI (a table, an API), or not there: a version, no hash
        return None


def record(store: Store, spec: TaskSpec, run_id: str, at: datetime) -> None:
    """A succeeded task produced a version of each of its outlets and read its inlets."""
    for ds in spec.inlets:
        store.add_dataset_use(ds.uri, run_id, spec.id, at)
    for ds in spec.outlets:
        store.add_dataset_version(ds.uri, content_hash(ds.uri), run_id, spec.id, at)
