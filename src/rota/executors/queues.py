"""Reading an executor's event queue the way ``poll`` promises."""

from __future__ import annotations

import queue
from typing import TypeVar

T = TypeVar("T")


def drain(events: queue.SimpleQueue[T], timeout: float) -> list[T]:
    """Wait up to *timeout* seconds for the first item (none when *timeout* <= 0), then take
    every item already queued; an empty list when nothing came."""
    out: list[T] = []
    try:
        out.append(events.get(timeout=timeout) if timeout > 0 else events.get_nowait())
    except queue.Empty:
        return out
    while True:
        try:
            out.append(events.get_nowait())
        except queue.Empty:
            return out
