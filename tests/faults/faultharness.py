"""The crash-test harness: runs ``rota`` in subprocesses, SIGKILLs the runner, checks what is left.

Each runner process is started with a unique marker in its environment (``ROTA_FAULT_TAG``), which
every process it forks or starts inherits; after a kill, ``/proc/*/environ`` tells which of them
are still alive. Zombies (state Z or X) count as dead: nothing reaps orphans in a container.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FLOW_SOURCE = Path(__file__).with_name("flow200.py")
FLOW_NAME = "crashy"
TASK_COUNT = 200
JOIN_VALUE = {"tails": 4 * 21, "sums": sum(range(100))}
WORKERS = 2
KILL_DEADLINE_S = 5.0
CLI_TIMEOUT_S = 120.0
NO_DATABASE = "no database yet"  # the runner was killed before it created the SQLite file
_SCRUBBED = ("ROTA_DATABASE_URL", "ROTA_FAULT_POINTS", "ROTA_FAULT_TAG", "ROTA_EXECUTOR")


_LAUNCHED: list[Launched] = []


def kill_leftovers() -> list[str]:
    """SIGKILL every ``rota`` process the harness started that is still running (after a test
    failed half-way); return their command lines."""
    left = []
    while _LAUNCHED:
        launched = _LAUNCHED.pop()
        if launched.proc.poll() is None:
            left.append(" ".join(launched.args))
            launched.proc.kill()
            launched.proc.communicate()
    return left


@dataclass
class Launched:
    """One ``rota`` process started by the harness."""

    proc: subprocess.Popen[str]
    tag: str
    args: tuple[str, ...]
    started: float


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        lines = self.out.strip().splitlines()
        return json.loads(lines[-1]) if lines else None


@dataclass(frozen=True)
class LedgerLine:
    task_id: str
    at: float
    pid: int
    run_id: str
    try_number: int


@dataclass
class KillReport:
    """What one SIGKILL of a runner left behind."""

    killed: bool  # False: the process had already ended on its own
    returncode: int
    survivors: list[str] = field(default_factory=list)  # "pid state cmdline" still alive after 5 s
    dead_after_s: float = 0.0
    integrity: str = NO_DATABASE
    foreign_keys: list[Any] = field(default_factory=list)
    alive_before: int = 0  # processes carrying the runner's marker just before the kill


class Harness:
    """A ROTA_HOME, a copy of the 200-task flow and an effect ledger, in one temporary folder."""

    def __init__(self, root: Path, flow_name: str = FLOW_NAME, workers: int = WORKERS) -> None:
        self.root = root
        self.flow_name = flow_name
        self.workers = workers
        self.home = root / "rota-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.flow = root / "flow200.py"
        self.flow.write_text(FLOW_SOURCE.read_text())
        self.ledger = root / "ledger.tsv"
        self.db = self.home / "rota.db"
        self.events: list[str] = []  # a log of what happened, for failure messages

    # --- processes -----------------------------------------------------------------------------
    def env(self, tag: str, fault_points: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        env.update(ROTA_HOME=str(self.home), ROTA_TEST_LEDGER=str(self.ledger), ROTA_FAULT_TAG=tag)
        if fault_points:
            env["ROTA_FAULT_POINTS"] = fault_points
        return env

    def launch(self, *args: str, fault_points: str | None = None) -> Launched:
        tag = uuid.uuid4().hex
        full = (*args, "--workers", str(self.workers), "--json")
        proc = subprocess.Popen(
            [sys.executable, "-m", "rota", *full],
            env=self.env(tag, fault_points),
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        launched = Launched(proc, tag, full, time.monotonic())
        _LAUNCHED.append(launched)
        return launched

    def run_args(self) -> tuple[str, ...]:
        return ("run", str(self.flow))

    def resume_args(self, run_id: str | None = None) -> tuple[str, ...]:
        return ("resume", run_id) if run_id else ("resume", "--last", self.flow_name)

    def finish(self, launched: Launched, timeout: float = CLI_TIMEOUT_S) -> CliResult:
        """Wait for *launched* to end on its own."""
        try:
            out, err = launched.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(launched)
            raise AssertionError(f"rota {' '.join(launched.args)} hung for {timeout} s") from None
        return CliResult(launched.proc.returncode, out, err)

    def cli(self, *args: str, fault_points: str | None = None) -> CliResult:
        return self.finish(self.launch(*args, fault_points=fault_points))

    def kill(self, launched: Launched) -> KillReport:
        """SIGKILL the runner (its pid only), then look at what it left: live processes carrying
        its marker after up to 5 s, and the database's integrity."""
        proc = launched.proc
        before = live_tagged(launched.tag)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # our child: an unreaped zombie at worst
        killed_at = time.monotonic()
        proc.communicate()
        report = self.after_death(launched, killed_at)
        report.alive_before = len(before)
        return report

    def after_death(self, launched: Launched, died_at: float) -> KillReport:
        """The checks made after a runner died: its processes end, the database is sound."""
        code = launched.proc.returncode
        report = KillReport(killed=code == -signal.SIGKILL, returncode=code)
        deadline = died_at + KILL_DEADLINE_S
        while True:
            report.survivors = live_tagged(launched.tag)
            now = time.monotonic()
            if not report.survivors or now >= deadline:
                break
            time.sleep(0.02)
        report.dead_after_s = now - died_at
        if self.db.exists():
            report.integrity, report.foreign_keys = self.integrity()
        return report

    # --- the store -----------------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """A connection that never writes the store (``query_only``).

        Not ``mode=ro``: after a SIGKILL the WAL may need recovering, which a read-only connection
        cannot do ("attempt to write a readonly database"); recovery changes no committed data.
        """
        db = sqlite3.connect(f"file:{self.db}?mode=rw", uri=True, timeout=30)
        db.execute("PRAGMA query_only=ON")
        return db

    def integrity(self) -> tuple[str, list[Any]]:
        with self.connect() as db:
            rows = db.execute("PRAGMA integrity_check").fetchall()
            fks = db.execute("PRAGMA foreign_key_check").fetchall()
        db.close()
        return "\n".join(str(r[0]) for r in rows), fks

    def tables(self) -> list[str]:
        if not self.db.exists():
            return []
        with self.connect() as db:
            rows = db.execute("select name from sqlite_master where type = 'table'").fetchall()
        db.close()
        return sorted(r[0] for r in rows)

    def runs(self) -> dict[str, str]:
        """run_id -> state of every run of the flow (empty before the store or its tables exist)."""
        if not self.db.exists():
            return {}
        try:
            with self.connect() as db:
                rows = db.execute(
                    "select run_id, state from runs where flow = ?", (self.flow_name,)
                ).fetchall()
            db.close()
        except sqlite3.OperationalError as err:  # killed before the schema was created
            if "no such table" in str(err):
                return {}
            raise
        return dict(rows)

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        with self.connect() as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "select * from task_attempts where run_id = ? order by task_id, try_number",
                (run_id,),
            ).fetchall()
        db.close()
        return [dict(r) for r in rows]

    # --- the ledger ----------------------------------------------------------------------------
    def ledger_lines(self, run_id: str | None = None) -> list[LedgerLine]:
        if not self.ledger.exists():
            return []
        lines = []
        for n, raw in enumerate(self.ledger.read_text().splitlines(), 1):
            parts = raw.split("\t")
            assert len(parts) == 5, f"ledger line {n} is malformed: {raw!r}"
            task_id, at, pid, rid, try_number = parts
            if run_id is None or rid == run_id:
                lines.append(LedgerLine(task_id, float(at), int(pid), rid, int(try_number)))
        return lines

    def verify_run(self, run_id: str) -> RunCheck:
        """Every check made on a run that ended: see :class:`RunCheck`."""
        return check_run(
            run_id, self.runs().get(run_id), self.attempts(run_id), self.ledger_lines(run_id)
        )

    def join_output(self, run_id: str) -> Any:
        """The value the ``join`` task of a finished run stored (read through Rota's own store)."""
        from rota.store.sql import open_store
        from rota.testing import read_output

        store = open_store(f"sqlite:///{self.db}")
        try:
            recs = [a for a in store.attempts(run_id) if a.task_id == "join"]
        finally:
            store.close()
        (rec,) = [a for a in recs if a.state.value == "success"]
        return read_output(rec)

    def tail_events(self, n: int = 12) -> str:
        return "\n".join(self.events[-n:])


@dataclass
class RunCheck:
    """The verdict on one finished run.

    Attributes:
        problems: violations of the acceptance criteria (must be empty).
        reexecuted_after_commit: ledger lines of a task written after its success was committed.
        duplicate_tries: (task, try) pairs the ledger shows running more than once.
        executions: ledger lines of the run.
    """

    problems: list[str] = field(default_factory=list)
    reexecuted_after_commit: list[str] = field(default_factory=list)
    duplicate_tries: list[str] = field(default_factory=list)
    executions: int = 0


def _epoch(stamp: str | None) -> float | None:
    """A SQLite timestamp (naive UTC text) as epoch seconds."""
    if stamp is None:
        return None
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()


def check_run(
    run_id: str, state: str | None, attempts: list[dict[str, Any]], ledger: list[LedgerLine]
) -> RunCheck:
    """Check a run that should have ended ``success``:

    * the run and each of its 200 tasks are ``success``, with exactly one success attempt each;
    * every task ran at least once (the ledger has a line for it), and its success attempt did;
    * no ledger line of a task is later than the ``committed_at`` of its success (a line after
      it is a re-execution after the success was committed).

    It also lists (task, try) pairs that ran more than once; that is not a violation of the
    acceptance criteria (no success was committed in between) and is reported separately.
    """
    check = RunCheck(executions=len(ledger))
    if state != "success":
        check.problems.append(f"run {run_id} ended {state!r}, not 'success'")
    success = _successes(attempts, check)
    ran: dict[str, list[LedgerLine]] = defaultdict(list)
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for line in ledger:
        ran[line.task_id].append(line)
        counts[line.task_id, line.try_number] += 1
    never = sorted({a["task_id"] for a in attempts} - set(ran))
    if never:
        check.problems.append(f"{len(never)} tasks never ran (no ledger line): {never[:10]}")
    for tid, rec in sorted(success.items()):
        _check_after_commit(tid, rec, ran[tid], check)
    check.duplicate_tries = [f"{t} try {n} ran {c} times" for (t, n), c in counts.items() if c > 1]
    if check.reexecuted_after_commit:
        check.problems.append(
            f"{len(check.reexecuted_after_commit)} re-execution(s) after a committed success: "
            + "; ".join(check.reexecuted_after_commit[:5])
        )
    return check


def _successes(attempts: list[dict[str, Any]], check: RunCheck) -> dict[str, dict[str, Any]]:
    """The success attempt of each task; every task's latest attempt must be it."""
    success: dict[str, dict[str, Any]] = {}
    latest: dict[str, dict[str, Any]] = {}
    for a in attempts:  # sorted by task, then try
        latest[a["task_id"]] = a
        if a["state"] == "success":
            if a["task_id"] in success:
                check.problems.append(f"task {a['task_id']} has two success attempts")
            success[a["task_id"]] = a
    not_ok = sorted(t for t, a in latest.items() if a["state"] != "success")
    if len(latest) != TASK_COUNT or not_ok:
        check.problems.append(
            f"{len(latest)} tasks in the store; latest attempt not success: {not_ok[:10]}"
        )
    return success


def _check_after_commit(
    tid: str, rec: dict[str, Any], lines: list[LedgerLine], check: RunCheck
) -> None:
    committed = _epoch(rec["committed_at"])
    if committed is None:
        check.problems.append(f"task {tid}: its success attempt has no committed_at")
        return
    if not any(line.try_number == rec["try_number"] for line in lines):
        check.problems.append(f"task {tid}: no ledger line of its success try {rec['try_number']}")
    for line in lines:
        if line.at > committed:
            check.reexecuted_after_commit.append(
                f"{tid} try {line.try_number} ran at {line.at:.6f} (pid {line.pid}), "
                f"{line.at - committed:.3f} s after its success (try {rec['try_number']}) "
                f"was committed"
            )


def live_tagged(tag: str) -> list[str]:
    """Processes alive (not zombies) whose environment carries ``ROTA_FAULT_TAG=tag``."""
    needle = f"ROTA_FAULT_TAG={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
            if needle not in env.split(b"\0"):
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # gone, or not ours to read
            continue
        state = stat.rsplit(")", 1)[1].split()[0]
        if state not in ("Z", "X"):
            found.append(f"{entry} {state} {cmdline.decode(errors='replace')[:120]}")
    return found
