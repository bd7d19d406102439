"""References to stored outputs, from store records and from executor outcomes."""

from __future__ import annotations

from rota.executors.base import AttemptOutcome, StoredRef
from rota.store.base import AttemptRecord


def stored_ref(
    uri: str | None,
    serializer: str | None,
    content: str | None,
    size: int | None,
    inline: bytes | None = None,
) -> StoredRef | None:
    """The reference to a stored output, or None when there is none (the task returned None)."""
    if uri is None:
        return None
    return StoredRef(uri, serializer or "pickle", content, size or 0, inline)


def record_ref(rec: AttemptRecord) -> StoredRef | None:
    return stored_ref(
        rec.output_path, rec.output_serializer, rec.output_hash, rec.output_size, rec.output_inline
    )


def outcome_ref(out: AttemptOutcome) -> StoredRef | None:
    return stored_ref(
        out.output_path, out.output_serializer, out.output_hash, out.output_size, out.output_inline
    )
