"""A nightly batch: wait for the day's drop of orders, total them per region, write a report.

Every day an upstream system drops ``<inbox>/<YYYY-MM-DD>/orders.csv`` and then an empty
``done`` file beside it. The flow's run for that day waits for ``done`` (a file sensor in
reschedule mode: it holds no worker between pokes), reads the CSV, totals the amounts per region
and writes ``<outbox>/<YYYY-MM-DD>.json``. Relative folders are read from the folder Rota runs in.

    python examples/nightly_batch.py 2026-01-01 2026-01-03     # write sample drops for 3 days
    rota backfill examples/nightly_batch.py --start 2026-01-01 --end 2026-01-03
    rota scheduler --flows examples/                           # then one run every night

The schedule is daily at midnight UTC: the run for day D starts once D's interval is over (at
the next midnight), as in Airflow. ``catchup=False``: after downtime only the latest missed day
runs; ``rota backfill`` runs the others.
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from rota import FileSensor, flow, task


def day_of(ctx: Any) -> str:
    """The run's logical date as ``YYYY-MM-DD`` (the template variable ``ds``)."""
    return str(ctx.logical_date.astimezone(UTC).date())


@task(retries=2)
def load(inbox: str, ctx: Any) -> list[dict[str, Any]]:
    """The day's orders: one dict per CSV row, the amount as a number."""
    path = Path(inbox) / day_of(ctx) / "orders.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [{"region": r["region"], "amount": float(r["amount"])} for r in csv.DictReader(fh)]
    print(f"loaded {len(rows)} orders from {path}")
    return rows


@task
def totals(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The amounts summed per region, rounded to cents."""
    summed: dict[str, float] = {}
    for row in rows:
        summed[row["region"]] = summed.get(row["region"], 0.0) + row["amount"]
    return {region: round(amount, 2) for region, amount in sorted(summed.items())}


@task
def report(by_region: dict[str, float], outbox: str, ctx: Any) -> str:
    """Write the day's totals to ``<outbox>/<day>.json`` (a re-run overwrites it)."""
    folder = Path(outbox)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{day_of(ctx)}.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps({"day": day_of(ctx), "totals": by_region}, indent=2))
    tmp.replace(target)
    print(f"wrote {target}")
    return str(target)


@flow(schedule="@daily", timezone="UTC", start_date=datetime(2026, 1, 1), catchup=False)
def nightly_batch(inbox: str = "inbox", outbox: str = "outbox") -> None:
    """Wait for the day's drop, then load, total and report it."""
    wait = FileSensor(
        "wait_for_drop",
        path="{{ params.inbox }}/{{ ds }}/done",
        poke_interval=60,
        timeout=6 * 3600,
        mode="reschedule",
    )
    rows = load(inbox)
    wait >> rows
    report(totals(rows), outbox)


def write_sample_drops(inbox: Path, first: date, last: date) -> list[Path]:
    """Write a small orders.csv and its ``done`` marker for each day from *first* to *last*."""
    written = []
    day = first
    while day <= last:
        folder = inbox / str(day)
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["region,amount"] + [
            f"{region},{(day.day * 10 + i) / 4:.2f}" for i, region in enumerate("NSEWN")
        ]
        (folder / "orders.csv").write_text("\n".join(lines) + "\n")
        (folder / "done").touch()
        written.append(folder)
        day += timedelta(days=1)
    return written


if __name__ == "__main__":
    start, end = (date.fromisoformat(a) for a in sys.argv[1:3])
    for made in write_sample_drops(Path("inbox"), start, end):
        print(f"wrote {made}/orders.csv and {made}/done")
