"""The floor: what the fan-out costs with nothing but a process pool and a durable database.

Usage: python bench/floor.py [--n 2000,10000] [--json]

The workload is the suite's fan-out (root -> N leaves -> join, N + 2 tasks), each task a no-op
returning a small int. Two worker processes are forked once and fed one task at a time over a
pipe (a worker gets its next task only after it has answered the last one); each worker says
when it starts a task and sends back the task's value when it ends. Every task goes through
three durable transitions in SQLite (WAL, ``synchronous=FULL``): queued (before it is sent),
running (the worker began it) and success (with its value). They are group-committed: each step
of the loop reads every message that has arrived, records the transitions they make and queues
the tasks that became ready, commits all of that in one transaction, and only then sends work
(so a task is durably queued before it runs, and a join starts only after its upstreams'
successes are durable). Printed as ms per task.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

WORKERS = 2
SCHEMA = (
    "CREATE TABLE attempts (task TEXT PRIMARY KEY, state TEXT NOT NULL, value INTEGER, "
    "queued_at REAL, started_at REAL, ended_at REAL)"
)


def small_int(i: int) -> int:
    """The no-op task: returns a small int."""
    return i % 100


def worker_main(conn: Connection) -> None:
    """A worker: for each task it is sent, say it started, run it, send back its value."""
    while True:
        msg = conn.recv()
        if msg is None:
            return
        name, arg = msg
        conn.send(("running", name, time.time()))
        conn.send(("success", name, small_int(arg)))


@dataclass
class Fanout:
    """The fan-out's scheduling state: which tasks are ready, which wait on how many upstreams."""

    n: int
    ready: deque[tuple[str, int]] = field(default_factory=deque)
    waiting_join: int = 0
    done: int = 0

    def __post_init__(self) -> None:
        self.ready.append(("root", 0))
        self.waiting_join = self.n

    def succeeded(self, name: str) -> list[tuple[str, int]]:
        """Tasks that became ready because *name* succeeded."""
        self.done += 1
        if name == "root":
            return [(f"leaf_{i}", i) for i in range(self.n)]
        if name.startswith("leaf_"):
            self.waiting_join -= 1
            return [("join", 0)] if self.waiting_join == 0 else []
        return []


@dataclass
class Step:
    """The transitions of one loop step, committed in one transaction."""

    queued: list[tuple[str, float]] = field(default_factory=list)
    running: list[tuple[float, str]] = field(default_factory=list)
    success: list[tuple[int, float, str]] = field(default_factory=list)

    def commit(self, db: sqlite3.Connection) -> int:
        """Write every transition of the step in one durable transaction; how many there were."""
        with db:
            db.executemany(
                "INSERT INTO attempts (task, state, queued_at) VALUES (?, 'queued', ?)", self.queued
            )
            db.executemany(
                "UPDATE attempts SET state = 'running', started_at = ? WHERE task = ?",
                self.running,
            )
            db.executemany(
                "UPDATE attempts SET state = 'success', value = ?, ended_at = ? WHERE task = ?",
                self.success,
            )
        return len(self.queued) + len(self.running) + len(self.success)


def cpu_s(who: int) -> float:
    """User + system CPU seconds of this process (every thread) or of its reaped children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(SCHEMA)
    db.isolation_level = "DEFERRED"  # `with db:` then opens and commits one transaction
    return db


class Pool:
    """WORKERS forked processes, each fed one task at a time over its own pipe."""

    def __init__(self, workers: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for _ in range(workers):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(theirs,), daemon=True)
            proc.start()
            theirs.close()
            self.conns.append(mine)
            self.procs.append(proc)
        self.idle: list[Connection] = list(self.conns)

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for proc in self.procs:
            proc.join()


def read_messages(pool: Pool, fan: Fanout, step: Step) -> None:
    """Block until a worker speaks, then take every message already there."""
    for conn in wait(pool.conns):
        assert isinstance(conn, Connection)
        while conn.poll():
            kind, name, value = conn.recv()
            if kind == "running":
                step.running.append((value, name))
                continue
            step.success.append((value, time.time(), name))
            pool.idle.append(conn)
            fan.ready.extend(fan.succeeded(name))


def run_fanout(n: int, db: sqlite3.Connection, pool: Pool) -> dict[str, int]:
    """Drive the fan-out of *n* leaves to the end; counts of transactions and transitions."""
    fan = Fanout(n)
    to_send: deque[tuple[str, int]] = deque()
    transactions = transitions = 0
    step = Step()
    while fan.done < n + 2:
        now = time.time()
        while fan.ready:
            task = fan.ready.popleft()
            step.queued.append((task[0], now))
            to_send.append(task)
        transitions += step.commit(db)
        transactions += 1
        while to_send and pool.idle:
            pool.idle.pop().send(to_send.popleft())
        step = Step()
        read_messages(pool, fan, step)
    transitions += step.commit(db)
    return {"transactions": transactions + 1, "transitions": transitions}


def floor(n: int) -> dict[str, Any]:
    """Run the floor's fan-out of *n* leaves once in a fresh database; its figures."""
    with tempfile.TemporaryDirectory(prefix="rota_floor_") as tmp:
        db = open_db(Path(tmp) / "floor.db")
        kids0 = cpu_s(resource.RUSAGE_CHILDREN)
        pool = Pool(WORKERS)
        try:
            t0, cpu0 = time.perf_counter(), cpu_s(resource.RUSAGE_SELF)
            counts = run_fanout(n, db, pool)
            run_s, cpu = time.perf_counter() - t0, cpu_s(resource.RUSAGE_SELF) - cpu0
        finally:
            pool.close()
        kids = cpu_s(resource.RUSAGE_CHILDREN) - kids0
        states = dict(db.execute("SELECT state, count(*) FROM attempts GROUP BY state").fetchall())
        join_ok = db.execute("SELECT count(*) FROM attempts WHERE task LIKE 'leaf_%'").fetchone()
        db.close()
    n_tasks = n + 2
    return {
        "tool": "floor",
        "workload": f"fanout-{n}",
        "n_tasks": n_tasks,
        "run_s": round(run_s, 4),
        "ms_per_task": round(run_s * 1000 / n_tasks, 4),
        "ok": states == {"success": n_tasks} and join_ok[0] == n,
        "cpu_runner_ms_per_task": round(cpu * 1000 / n_tasks, 4),
        "cpu_workers_ms_per_task": round(kids * 1000 / n_tasks, 4),
        "states": states,
        **counts,
    }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="2000,10000", help="fan-out sizes, comma-separated")
    ap.add_argument("--repeat", type=int, default=3, help="measured runs after one warm-up")
    ap.add_argument("--json", action="store_true", help="one JSON line per size")
    return ap.parse_args(argv)


def measured(n: int, repeat: int) -> dict[str, Any]:
    """A warm-up, then *repeat* runs; the median run's record with every run's time."""
    floor(min(n, 200))
    runs = sorted((floor(n) for _ in range(repeat)), key=lambda r: r["run_s"])
    rec = runs[len(runs) // 2]
    rec["ok"] = all(r["ok"] for r in runs)
    rec["run_s_all"] = [r["run_s"] for r in runs]
    return rec


def merged(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One record of two measurements of the same size (taken before and after another's)."""
    times = sorted([*first["run_s_all"], *second["run_s_all"]])
    mid = statistics.median(times)
    rec = {**first, "run_s": round(mid, 4), "run_s_all": times, "ok": first["ok"] and second["ok"]}
    rec["ms_per_task"] = round(mid * 1000 / first["n_tasks"], 4)
    for key in ("cpu_runner_ms_per_task", "cpu_workers_ms_per_task"):
        rec[key] = round((first[key] + second[key]) / 2, 4)
    return rec


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    recs = [measured(int(x), args.repeat) for x in args.n.split(",") if x.strip()]
    for rec in recs:
        if args.json:
            print(json.dumps(rec))
        else:
            print(
                f"floor, fan-out N={rec['n_tasks'] - 2}: {rec['ms_per_task']:.4f} ms/task "
                f"({rec['run_s']:.3f} s, {rec['transactions']} transactions, "
                f"{rec['transitions']} transitions, ok={rec['ok']})"
            )
    return 0 if all(r["ok"] for r in recs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
