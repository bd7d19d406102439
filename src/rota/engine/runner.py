"""The runner: drives one run of a flow from its first ready task to its final state.

The loop takes ready tasks from the :class:`~rota.model.dag.ReadySet` counter, hands them to an
executor, and turns what the executor reports into state changes, which a :class:`BatchWriter`
commits in batches. The store is the truth; this object's dictionaries only mirror it for speed.
"""

from __future__ import annotations

import secrets
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rota.artifacts.local import output_path
from rota.engine.report import RunSummary, summarize
from rota.engine.writer import BatchWriter
from rota.executors.base import AttemptOutcome, AttemptSpec, AttemptStarted, Executor, InputRef
from rota.model.dag import Dag, Decision, ReadySet
from rota.model.schedule import Clock
from rota.model.states import FAILURES, RunState, TaskState
from rota.store.base import AttemptRecord, Change, NewTask, RunChange, RunRecord, Store


@dataclass(frozen=True, slots=True)
class FlowRef:
    """Where a flow's code lives: workers import ``module`` from ``path`` before running tasks."""

    name: str
    path: str = ""
    module: str = ""
    code_hash: str = ""


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot of a run for live displays."""

    run_id: str
    total: int
    done: int
    failed: int
    running: tuple[str, ...]

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed - len(self.running)


ProgressHook = Callable[[Progress], None]


def new_run_id(now: datetime) -> str:
    """A sortable, readable run id: UTC time plus a random suffix."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class Runner:
    """Creates runs and drives them to the end with one executor."""

    def __init__(
        self,
        store: Store,
        executor: Executor,
        *,
        home: Path,
        clock: Clock,
        on_progress: ProgressHook | None = None,
        progress_every: float = 0.1,
    ) -> None:
        self.store = store
        self.executor = executor
        self.artifacts_dir = home / "artifacts"
        self.logs_dir = home / "logs"
        self.clock = clock
        self.on_progress = on_progress
        self.progress_every = progress_every

    def create(self, dag: Dag, flow: FlowRef, run_id: str | None = None) -> RunRecord:
        """Record a new run of *dag*: the run row and one scheduled attempt per task."""
        now = self.clock.now()
        tasks = [NewTask(tid, spec.op.kind, spec.op.code_hash()) for tid, spec in dag.tasks.items()]
        self.store.upsert_flow(flow.name, flow.path, flow.code_hash, now)
        return self.store.create_run(
            run_id or new_run_id(now),
            flow.name,
            dag.params,
            tasks,
            now,
            flow_path=flow.path,
            flow_hash=flow.code_hash,
        )

    def run(self, dag: Dag, flow: FlowRef, run_id: str | None = None) -> RunSummary:
        """Create a run of *dag* and drive it to the end."""
        record = self.create(dag, flow, run_id)
        return self.drive(record.run_id, dag, flow)

    def drive(self, run_id: str, dag: Dag, flow: FlowRef) -> RunSummary:
        """Run every task of *run_id* that is not finished yet, then set the run's final state."""
        run = self.store.get_run(run_id)
        writer = BatchWriter(self.store, self.clock.now)
        loop = _RunLoop(self, run, dag, flow, writer)
        try:
            loop.start()
            loop.run()
            loop.finish()
            writer.close()
        except BaseException:
            loop.abort()
            raise
        return summarize(self.store, run_id)


class _RunLoop:
    """The per-run state of :meth:`Runner.drive`, split out to keep each step small."""

    def __init__(
        self, runner: Runner, run: RunRecord, dag: Dag, flow: FlowRef, writer: BatchWriter
    ):
        self.r = runner
        self.run_rec = run
        self.dag = dag
        self.flow = flow
        self.writer = writer
        self.attempt: dict[str, AttemptRecord] = {}
        self.state: dict[str, TaskState] = {}
        self.outputs: dict[str, str | None] = {}
        self.ready: deque[str] = deque()
        self.in_flight: dict[int, str] = {}
        self.dispatched: dict[int, datetime] = {}
        self.pending: list[Change] = []
        self.modules = ((flow.module, flow.path),) if flow.module and flow.path else ()
        self._last_progress = 0.0

    # --- setup ---------------------------------------------------------------------------------
    def start(self) -> None:
        for rec in self.r.store.attempts(self.run_rec.run_id):
            current = self.attempt.get(rec.task_id)
            if current is None or rec.try_number > current.try_number:
                self.attempt[rec.task_id] = rec
        finished: dict[str, TaskState] = {}
        for tid, rec in self.attempt.items():
            self.state[tid] = rec.state
            if rec.state is TaskState.SUCCESS:
                finished[tid] = rec.state
                self.outputs[tid] = rec.output_path
        self.ready_set = ReadySet(self.dag, finished)
        self.writer.put(
            [],
            [
                RunChange(
                    self.run_rec.run_id, self.run_rec.state, RunState.RUNNING, self.r.clock.now()
                )
            ],
        )
        self.apply_decisions(self.ready_set.initial())

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            self.submit_ready()
            self.flush()
            if not self.in_flight:
                break
            self.handle(self.r.executor.poll(0.05))
            self.report_progress()
        self.report_progress(force=True)

    def submit_ready(self) -> None:
        free = self.r.executor.capacity()
        while self.ready and free > 0:
            tid = self.ready.popleft()
            rec = self.attempt[tid]
            self.dispatched[rec.id] = self.r.clock.now()
            self.in_flight[rec.id] = tid
            self.r.executor.submit(self.attempt_spec(tid, rec))
            free -= 1

    def attempt_spec(self, tid: str, rec: AttemptRecord) -> AttemptSpec:
        spec = self.dag.tasks[tid]
        run_id = self.run_rec.run_id
        inputs = tuple(InputRef(up, self.outputs.get(up)) for up in spec.data_inputs)
        log = self.r.logs_dir / run_id / tid / f"{rec.try_number}.log"
        return AttemptSpec(
            attempt_id=rec.id,
            run_id=run_id,
            flow=self.flow.name,
            task_id=tid,
            map_index=rec.map_index,
            try_number=rec.try_number,
            op=spec.op,
            args=spec.args,
            kwargs=spec.kwargs,
            inputs=inputs,
            output_path=str(output_path(self.r.artifacts_dir, run_id, tid, rec.map_index)),
            log_path=str(log),
            params=self.dag.params,
            modules=self.modules,
        )

    def handle(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, AttemptStarted):
                self.on_started(event)
            else:
                self.on_outcome(event)

    def on_started(self, ev: AttemptStarted) -> None:
        tid = self.in_flight[ev.attempt_id]
        fields = {
            "dispatched_at": self.dispatched.get(ev.attempt_id),
            "started_at": _ts(ev.at),
            "worker": ev.worker,
        }
        self.change(tid, TaskState.RUNNING, fields)

    def on_outcome(self, out: AttemptOutcome) -> None:
        tid = self.in_flight.pop(out.attempt_id)
        self.dispatched.pop(out.attempt_id, None)
        if self.state[tid] is TaskState.QUEUED:  # it never started (its worker was lost)
            self.change(
                tid, TaskState.RUNNING, {"started_at": _ts(out.started_at), "worker": out.worker}
            )
        fields: dict[str, Any] = {
            "finished_at": _ts(out.finished_at),
            "log_path": out.log_path,
            "output_path": out.output_path,
            "output_size": out.output_size,
        }
        if out.error is not None:
            fields.update(
                error_type=out.error.type_name,
                error_message=out.error.message[:4000],
                error_traceback=out.error.traceback[-20000:],
                exit_code=out.error.exit_code,
            )
        if out.ok and not out.skipped:
            new = TaskState.SUCCESS
            self.outputs[tid] = out.output_path
        else:
            new = TaskState.SKIPPED if out.skipped else TaskState.FAILED
        self.change(tid, new, fields)
        self.apply_decisions(self.ready_set.done(tid, new))

    def apply_decisions(self, decisions: list[Decision]) -> None:
        for d in decisions:
            if d.state is TaskState.QUEUED:
                self.change(d.task_id, TaskState.QUEUED, {"queued_at": self.r.clock.now()})
                self.ready.append(d.task_id)
            else:
                self.change(d.task_id, d.state, {})

    def change(self, tid: str, new: TaskState, fields: dict[str, Any]) -> None:
        rec = self.attempt[tid]
        self.pending.append(Change(rec.id, self.state[tid], new, fields))
        self.state[tid] = new

    def flush(self) -> None:
        if self.pending:
            self.writer.put(self.pending)
            self.pending = []

    # --- the end -------------------------------------------------------------------------------
    def finish(self) -> None:
        failed = any(s in FAILURES for s in self.state.values())
        final = RunState.FAILED if failed else RunState.SUCCESS
        self.writer.put(
            [], [RunChange(self.run_rec.run_id, RunState.RUNNING, final, self.r.clock.now())]
        )

    def abort(self) -> None:
        """Mark unfinished queued and running attempts, and the run, as interrupted (best effort).

        Changes made before the interruption are committed first, so the conditional writes below
        find the states they expect.
        """
        now = self.r.clock.now()
        for tid, state in self.state.items():
            if state in (TaskState.QUEUED, TaskState.RUNNING):
                self.change(tid, TaskState.INTERRUPTED, {"finished_at": now})
        run_change = RunChange(self.run_rec.run_id, RunState.RUNNING, RunState.INTERRUPTED, now)
        try:
            self.writer.put(self.pending, [run_change])
            self.pending = []
            self.writer.close()
        except Exception as err:  # the interruption matters more; a later resume sorts it out
            print(f"rota: could not record the interruption: {err}", file=sys.stderr)

    def report_progress(self, *, force: bool = False) -> None:
        hook = self.r.on_progress
        if hook is None:
            return
        now = self.r.clock.monotonic()
        if not force and now - self._last_progress < self.r.progress_every:
            return
        self._last_progress = now
        done = sum(1 for s in self.state.values() if s in (TaskState.SUCCESS, TaskState.SKIPPED))
        failed = sum(1 for s in self.state.values() if s in FAILURES)
        running = tuple(t for t in self.in_flight.values() if self.state[t] is TaskState.RUNNING)
        hook(Progress(self.run_rec.run_id, len(self.dag), done, failed, running))
