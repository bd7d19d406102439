"""``rota runs prune``: forget runs that ended before a cutoff, with their logs and outputs.

What is pruned: runs (of one flow, when named) that ended before the cutoff and that no runner
can be on (queued and running runs stay), with their attempts, their log folder and their output
folder. A run whose outputs a kept run's cache hits still read is kept, and so named (delete the
run that reads them first, or ``rota cache clear``). Rows go first, in one transaction, then the
files: a crash between the two leaves files no row points to, never a row whose files are gone.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rota.artifacts.store import ArtifactStore
from rota.store.base import PruneCandidate, Store


@dataclass(frozen=True, slots=True)
class PrunePlan:
    """What a prune deletes (``runs``) and keeps although it is old (``kept``), and the bytes of
    logs and outputs it frees."""

    runs: list[PruneCandidate]
    kept: list[PruneCandidate] = field(default_factory=list)
    log_bytes: int = 0

    @property
    def attempts(self) -> int:
        return sum(c.attempts for c in self.runs)

    @property
    def output_bytes(self) -> int:
        return sum(c.output_bytes for c in self.runs)


def plan_prune(
    store: Store, before: datetime, logs_dir: Path, flow: str | None = None
) -> PrunePlan:
    """The runs a prune of what ended before *before* deletes, and those it must keep."""
    found = store.old_runs(before, flow)
    going = {c.run_id for c in found}
    changed = True
    while changed:  # a run kept for its readers keeps what it reads too
        changed = False
        for c in found:
            if c.run_id in going and any(user not in going for user in c.reused_by):
                going.discard(c.run_id)
                changed = True
    runs = [c for c in found if c.run_id in going]
    kept = [c for c in found if c.run_id not in going]
    return PrunePlan(runs, kept, sum(_folder_bytes(logs_dir / c.run_id) for c in runs))


def prune(store: Store, plan: PrunePlan, logs_dir: Path, artifacts: ArtifactStore) -> int:
    """Delete the runs of *plan*: their rows, then their log and output folders.

    Returns:
        The runs whose rows were deleted.
    """
    ids = [c.run_id for c in plan.runs]
    deleted = store.delete_runs(ids)
    for run_id in ids:
        _remove_tree(logs_dir / run_id)
        artifacts.delete_run(run_id)
    return deleted


def _folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under *folder* (links are not followed, nor counted)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            try:
                total += 0 if os.path.islink(path) else os.lstat(path).st_size
            except OSError:
                continue
    return total


def _remove_tree(folder: Path) -> None:
    """Delete *folder* and what it holds; a link in it is removed, never followed."""
    if folder.is_symlink():
        folder.unlink()
    elif folder.is_dir():
        shutil.rmtree(folder)  # removes links as links (and resists a swap under it)
