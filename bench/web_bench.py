"""How fast the UI renders a big store: the runs page of 100,000 runs and a 10,000-task run.

Usage: python bench/web_bench.py [--runs 100000] [--tasks 10000] [--repeat 5]

It fills a SQLite store in a temporary ROTA_HOME (the runs inserted in bulk, the big run made
through ``Store.create_run`` with its graph, its attempts then stamped as finished), starts a real
``rota ui`` on 127.0.0.1, and times whole HTTP requests from this process (``perf_counter``
around each request; the median of ``--repeat``): the runs page, a page deep in the runs by
cursor, the JSON runs API, and the big run's page (graph not drawn past 2,000 tasks; Gantt, table
and critical path over all 10,000 tasks) and JSON. Prints one line per request: wall seconds
(median and max) and the CPU seconds the server process spent on it (median: what a request costs
on an idle machine, whatever the load). A benchmark, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from sqlalchemy import insert, update

from rota.store.base import NewTask
from rota.store.sql import open_store
from rota.store.tables import runs, task_attempts

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fill(home: Path, n_runs: int, n_tasks: int) -> str:
    """Make *n_runs* finished runs and one run of *n_tasks* tasks; return the big run's id."""
    store = open_store(f"sqlite:///{home / 'rota.db'}")
    with store.engine.begin() as conn:
        batch = []
        for i in range(n_runs):
            at = T0 + timedelta(minutes=i)
            batch.append({
                "run_id": f"r{i:07d}", "flow": f"flow{i % 20}",
                "state": "success" if i % 7 else "failed",
                "params": {"i": i}, "created_at": at, "started_at": at,
                "ended_at": at + timedelta(seconds=30), "run_type": "scheduled", "logical_date": at,
                "data_interval_start": at, "data_interval_end": at + timedelta(minutes=1),
            })  # fmt: skip
            if len(batch) == 5000:
                conn.execute(insert(runs), batch)
                batch = []
        if batch:
            conn.execute(insert(runs), batch)
    width = 100
    tasks = [
        NewTask(f"t{layer}_{i}", "python", "h", upstream=() if layer == 0 else
                (f"t{layer - 1}_{i}", f"t{layer - 1}_{(i + 1) % width}"))
        for layer in range(n_tasks // width) for i in range(width)
    ]  # fmt: skip
    big = store.create_run("big", "big", {}, tasks, T0 + timedelta(days=400))
    with store.engine.begin() as conn:
        for a in store.attempts(big.run_id):
            layer = int(a.task_id[1:].split("_")[0])
            start = T0 + timedelta(days=400, seconds=layer)
            conn.execute(
                update(task_attempts).where(task_attempts.c.id == a.id).values(
                    state="success", queued_at=start, dispatched_at=start, started_at=start,
                    finished_at=start + timedelta(seconds=0.9),
                    committed_at=start + timedelta(seconds=1),
                )
            )  # fmt: skip
    store.close()
    return big.run_id


def get(
    port: int, token: str, target: str, server: psutil.Process
) -> tuple[int, int, float, float]:
    """One request: its status, body size, wall seconds, and the CPU seconds the server spent."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    cpu_before = _cpu(server)
    started = time.perf_counter()
    conn.request("GET", target, headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    body = resp.read()
    took = time.perf_counter() - started
    conn.close()
    return resp.status, len(body), took, _cpu(server) - cpu_before


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="rota-web-bench-"))
    os.chmod(home, 0o700)
    started = time.perf_counter()
    big = fill(home, args.runs, args.tasks)
    took = time.perf_counter() - started
    print(f"filled {args.runs} runs and a {args.tasks}-task run in {took:.1f} s")
    env = {**os.environ, "ROTA_HOME": str(home)}
    env.pop("ROTA_DATABASE_URL", None)
    log = home / "ui.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rota", "ui", "--port", "0"], stdout=out,
                                stderr=subprocess.STDOUT, env=env)  # fmt: skip
    try:
        port = 0
        for _ in range(600):
            found = re.search(rb"serving http://127.0.0.1:(\d+)/", log.read_bytes())
            if found:
                port = int(found.group(1))
                break
            time.sleep(0.1)
        token = (home / "ui-token").read_text().strip()
        first = json.loads(get_body(port, token, "/api/runs?limit=500"))
        deep = first["next_cursor"]
        for _ in range(20):  # 10,000 runs deep
            deep = json.loads(get_body(port, token, f"/api/runs?limit=500&cursor={deep}"))[
                "next_cursor"
            ]
        targets = [
            ("runs page (newest 50 of all)", "/runs"),
            ("runs page, one flow, failed only", "/runs?flow=flow3&state=failed"),
            ("runs page 10,500 runs deep (cursor)", f"/runs?cursor={deep}"),
            ("runs API, 50", "/api/runs?limit=50"),
            (f"run page of a {args.tasks}-task run", f"/runs/{big}"),
            (f"run API of a {args.tasks}-task run", f"/api/runs/{big}"),
            ("flows page (20 flows)", "/"),
        ]
        server = psutil.Process(proc.pid)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(
            f"{'request':42} {'status':>6} {'bytes':>10} {'median s':>9} {'max s':>7} {'cpu s':>6}"
        )
        for name, target in targets:
            get(port, token, target, server)  # warm-up
            times, cpus = [], []
            for _ in range(args.repeat):
                status, size, took, cpu = get(port, token, target, server)
                times.append(took)
                cpus.append(cpu)
            median, cpu = statistics.median(times), statistics.median(cpus)
            print(f"{name:42} {status:>6} {size:>10} {median:>9.3f} {max(times):>7.3f} {cpu:>6.3f}")
    finally:
        proc.terminate()
        proc.wait(30)


def get_body(port: int, token: str, target: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", target, headers={"Authorization": f"Bearer {token}"})
    body = conn.getresponse().read()
    conn.close()
    return body


if __name__ == "__main__":
    main()
