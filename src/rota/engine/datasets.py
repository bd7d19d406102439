"""Recording dataset versions and reads when tasks succeed (called after the commit)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

from rota.model.dag import TaskSpec
from rota.model.datasets import Dataset
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


def waiting_on(store: Store, flow: str, required: Iterable[Dataset]) -> list[str]:
    """The URIs of *required* with no version newer than the newest one a run of the flow was
    triggered for or read (empty: the flow is due). Versions are compared by number, so clocks do
    not matter.
    """
    runs = {r.run_id for r in store.list_runs(flow)}
    waiting: list[str] = []
    for dataset in required:
        latest = max((v.version for v in store.dataset_versions(dataset.uri)), default=0)
        seen = max(
            (u.version or 0 for u in store.dataset_uses(dataset.uri) if u.run_id in runs),
            default=0,
        )
        if latest <= seen:
            waiting.append(dataset.uri)
    return waiting
