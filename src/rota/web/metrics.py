"""``/metrics``: the store's counts in the Prometheus text format (0.0.4).

Runs and task attempts by state, a histogram of attempts' execution times, the queue depth
(attempts ready and waiting for a worker), and the age of each scheduler lock's heartbeat.
The scheduler does not record its loop time in the store, so no metric claims to show it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from rota.store.sqlbrowse import Counts

BUCKETS: Final = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(counts: Counts, now: datetime) -> str:
    """The metrics text for *counts*, read at *now*."""
    out = [
        "# HELP rota_runs Runs in the store, by state.",
        "# TYPE rota_runs gauge",
    ]
    out += [f'rota_runs{{state="{_label(s)}"}} {n}' for s, n in sorted(counts.runs.items())]
    out += ["# HELP rota_task_attempts Task attempts in the store, by state.",
            "# TYPE rota_task_attempts gauge"]  # fmt: skip
    out += [
        f'rota_task_attempts{{state="{_label(s)}"}} {n}' for s, n in sorted(counts.tasks.items())
    ]
    out += [
        "# HELP rota_task_duration_seconds Execution time of attempts (started to finished).",
        "# TYPE rota_task_duration_seconds histogram",
    ]
    out += [
        f'rota_task_duration_seconds_bucket{{le="{b:g}"}} {counts.durations.get(b, 0)}'
        for b in BUCKETS
    ]
    out += [
        f'rota_task_duration_seconds_bucket{{le="+Inf"}} {counts.finished}',
        f"rota_task_duration_seconds_sum {counts.seconds:.3f}",
        f"rota_task_duration_seconds_count {counts.finished}",
        "# HELP rota_queue_depth Attempts queued: ready, waiting for a worker.",
        "# TYPE rota_queue_depth gauge",
        f"rota_queue_depth {counts.queued}",
        "# HELP rota_scheduler_heartbeat_age_seconds Seconds since a scheduler lock's heartbeat.",
        "# TYPE rota_scheduler_heartbeat_age_seconds gauge",
    ]
    out += [
        f'rota_scheduler_heartbeat_age_seconds{{lock="{_label(name)}"}} '
        f"{max(0.0, (now - beat).total_seconds()):.3f}"
        for name, beat in sorted(counts.locks.items())
    ]
    return "\n".join(out) + "\n"
