"""The limits and levels a backfill takes as options, apart from :mod:`rota.engine.backfill`, so
that the command line can offer them without loading the engine."""

from __future__ import annotations

from typing import Final

MAX_INTERVALS: Final = 100_000
"""The most intervals one backfill plans unless told otherwise (``--max-intervals``): a range
past it is most likely a mistake (a minutely schedule over years), refused before anything is
made or stored."""

RERUN_LEVELS: Final = ("none", "failed", "changed", "all")
"""How much of what exists a backfill runs again; each level includes the ones before it."""
