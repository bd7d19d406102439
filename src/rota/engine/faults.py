"""Named fault points for crash tests: ``ROTA_FAULT_POINTS=name:n`` kills the runner (SIGKILL)
the n-th time it passes the point ``name``. Points: ``run_created``, ``claimed`` (an attempt was
handed to a worker), ``output_written`` (a success arrived, not yet committed),
``success_committed`` (a batch with a success was committed)."""

from __future__ import annotations

import os
import signal
import threading

from rota.errors import ConfigError

POINTS = frozenset({"run_created", "claimed", "output_written", "success_committed"})


class FaultPoints:
    """Counts passes of named points and kills this process at the chosen one."""

    def __init__(self, spec: str = "") -> None:
        self._left: dict[str, int] = {}
        self._lock = threading.Lock()
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, count = item.partition(":")
            if name not in POINTS:
                raise ConfigError(
                    f"unknown fault point {name!r} (known: {', '.join(sorted(POINTS))})"
                )
            try:
                self._left[name] = max(1, int(count or "1"))
            except ValueError:
                raise ConfigError(f"fault point count must be an integer: {item!r}") from None

    def __bool__(self) -> bool:
        return bool(self._left)

    def hit(self, name: str) -> None:
        """Pass point *name*; die here if it is the chosen pass."""
        if name not in self._left:
            return
        with self._lock:
            self._left[name] -= 1
            if self._left[name] == 0:
                os.kill(os.getpid(), signal.SIGKILL)


NO_FAULTS = FaultPoints()
