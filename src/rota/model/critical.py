"""The critical path of a run: the chain of tasks that decided how long it took.

Defined from what the store recorded, not from estimates: start at the task that finished last;
from each task step back to the upstream that released it, the one that finished last among its
upstreams that had finished by the time the task became ready (was queued, or started); stop at a
task that no upstream released (a root, or one whose trigger rule let it start before any
upstream ended). Shortening any task off this chain would not have ended the run sooner; every
task on it waited for the one before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Span:
    """When a task became ready (its first attempt queued, or started) and when it last ended."""

    ready: datetime | None
    end: datetime | None


def critical_path(spans: Mapping[str, Span], upstream: Mapping[str, Sequence[str]]) -> list[str]:
    """The critical path through *spans* (task id -> span) along *upstream* edges, first task
    first; empty when no task has ended. Ties go to the task listed first."""
    ended = [tid for tid, span in spans.items() if span.end is not None]
    if not ended:
        return []
    last = max(ended, key=lambda tid: _end(spans, tid))
    chain = [last]
    seen = {last}
    while True:
        ready = spans[chain[-1]].ready
        released = [
            up
            for up in upstream.get(chain[-1], ())
            if up in spans and spans[up].end is not None and up not in seen
            if ready is None or _end(spans, up) <= ready
        ]
        if not released:
            break
        nxt = max(released, key=lambda tid: _end(spans, tid))
        chain.append(nxt)
        seen.add(nxt)
    chain.reverse()
    return chain


def _end(spans: Mapping[str, Span], tid: str) -> datetime:
    end = spans[tid].end
    assert end is not None
    return end
