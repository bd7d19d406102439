"""The bench folder is not a package: its modules import each other by name, so the tests of
the suite put the folder on the import path before importing them."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
