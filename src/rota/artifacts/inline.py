"""Small outputs kept inline: their bytes travel with the attempt's success, not in a file.

Most task outputs in a pipeline are small (a count, a path, a metric, a short list): writing each
to its own file costs a create, an fsync and a rename per task, which dominates the run of many
small tasks. An output whose serialized bytes fit in :data:`INLINE_LIMIT` is instead returned
with the attempt's outcome, and the metadata store keeps the bytes in the attempt's row, in the
same transaction that records the success (DESIGN.md, invariant 2: the output is durable when the
success is). Larger outputs still go to the artifact store.

A value is serialized once: into memory while it fits, spilling to the real target (a staging or
temporary file) at the first write that would pass the limit, so a large output costs no second
serialization and no more than :data:`INLINE_LIMIT` of extra memory.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, Final

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

INLINE_LIMIT: Final = 64 * 1024
"""Outputs whose serialized bytes are at most this many are stored in the attempt's row."""
SCHEME: Final = "inline:"


def inline_uri(run_id: str, task_id: str, map_index: int) -> str:
    """The URI naming the inline output of (*run_id*, *task_id*, *map_index*): a pure function,
    like a stored output's location (``inline:<run>/<task>`` or ``inline:<run>/<task>@<i>``)."""
    name = task_id if map_index < 0 else f"{task_id}@{map_index}"
    return f"{SCHEME}{run_id}/{name}"


def is_inline(uri: str | None) -> bool:
    """Whether *uri* names an output whose bytes are kept in its attempt's row."""
    return uri is not None and uri.startswith(SCHEME)


class SpillWriter(io.RawIOBase):
    """A write-only stream that keeps up to *limit* bytes in memory, then spills to a file.

    *open_target* is called once, at the first write that would pass *limit*; the bytes held so
    far are written to it first. :attr:`spilled` is the target then, None while all is in memory.
    """

    def __init__(self, limit: int, open_target: Callable[[], BinaryIO]) -> None:
        super().__init__()
        self._limit = limit
        self._open_target = open_target
        self._held = bytearray()
        self.spilled: BinaryIO | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        view = memoryview(data).cast("B")
        if self.spilled is None and len(self._held) + view.nbytes <= self._limit:
            self._held += view
            return view.nbytes
        self.spill().write(view)
        return view.nbytes

    def spill(self) -> BinaryIO:
        """The target, opened now if it is not yet (with the bytes held so far written to it)."""
        if self.spilled is None:
            self.spilled = self._open_target()
            self.spilled.write(self._held)
            self._held = bytearray()
        return self.spilled

    def flush(self) -> None:
        if self.spilled is not None:
            self.spilled.flush()

    def held(self) -> bytes:
        """The bytes kept in memory (all of them, when nothing spilled)."""
        return bytes(self._held)


__all__ = ["INLINE_LIMIT", "SpillWriter", "inline_uri", "is_inline"]
