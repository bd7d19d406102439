"""How many attempts a worker of the local pool may hold at once: its prefetch depth.

A worker that holds only the attempt it runs waits a round trip to the engine between two
attempts; for short tasks that wait is most of the time. A worker that holds many long ones keeps
them from an idle worker, and from a more urgent task that becomes ready later (each attempt the
pool holds is also a slot the run holds). So the depth follows the recent attempts: as many as
together take about :data:`BUDGET_S` by their recent mean duration, at least 1 (the attempt it
runs), at most *most*. Until an attempt has been measured, a worker holds one.
"""

from __future__ import annotations

BUDGET_S = 0.05
"""Seconds of expected work a worker may hold queued behind the attempt it runs."""
MOST = 32
"""The default most attempts a worker holds (one message carries at most this many)."""
_WEIGHT = 0.2
"""The weight of the newest duration in the running mean: one long attempt lowers the depth at
once; it takes a dozen short ones to raise it again."""


class Pace:
    """The running mean duration of the attempts the pool's workers ran, and the depth it gives.

    A fixed *depth* (a caller's ``prefetch``) disables the adaptation.
    """

    def __init__(self, most: int = MOST, *, depth: int | None = None) -> None:
        self._most = max(1, most)
        self._fixed = None if depth is None else max(1, depth)
        self._mean: float | None = None

    def record(self, seconds: float) -> None:
        """An attempt ran *seconds* in its worker (from its start to its outcome)."""
        seconds = max(0.0, seconds)
        if self._mean is None:
            self._mean = seconds
        else:
            self._mean += _WEIGHT * (seconds - self._mean)

    def depth(self) -> int:
        """How many attempts one worker may hold now (running and queued)."""
        if self._fixed is not None:
            return self._fixed
        if self._mean is None:
            return 1
        extra = BUDGET_S / self._mean if self._mean > 0 else float(self._most)
        return 1 + int(min(self._most - 1, extra))
