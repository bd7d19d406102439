"""Ends of what running attempts started outside their process (a container, a pod).

An attempt that starts something its process's death would not end (a container runs under the
runtime's daemon or conmon, a pod on a cluster) registers how to end it while it runs
(:func:`ended_with_process`). A pool worker ended for a timeout or a cancel (SIGTERM), or whose
engine died (its lifeline closed), calls :func:`end_live` before it dies, so the attempt leaves
nothing running. What a worker killed outright leaves is removed by the next resume
(:mod:`rota.engine.leftovers`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

_LIVE: dict[int, Callable[[], object]] = {}
"""Ends of what attempts running in this process started outside it, by a key of their own."""


@contextlib.contextmanager
def ended_with_process(end: Callable[[], object]) -> Iterator[None]:
    """While the block runs, *end* is called if this process is ended (:func:`end_live`)."""
    key = id(end)
    _LIVE[key] = end
    try:
        yield
    finally:
        _LIVE.pop(key, None)


def end_live() -> None:
    """End what the attempts of this process started outside it (a container): a worker calls
    it when it is ended for a timeout, a cancel or its engine's death, before it dies, so the
    attempt leaves nothing running. Each failure is ignored (a reaper or a resume remains)."""
    for end in list(_LIVE.values()):
        with contextlib.suppress(Exception):
            end()
