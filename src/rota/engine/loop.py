"""The per-run loop of the runner: ready tasks to the executor, its reports to state changes.

Each step takes the decisions of the :class:`~rota.model.dag.ReadySet` counter, submits what is
ready, and turns executor events into state changes queued on the :class:`BatchWriter`. A failed
attempt whose retry policy allows it is followed by a new attempt that waits (persisted in the
store as ``not_before``) until its back-off has passed.
"""

from __future__ import annotations

import heapq
import sys
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rota.artifacts.local import checkpoint_path, output_path
from rota.engine.callbacks import CallbackRunner
from rota.engine.writer import BatchWriter, Hook
from rota.executors.base import AttemptOutcome, AttemptSpec, AttemptStarted, InputRef
from rota.model.callbacks import CallbackContext
from rota.model.dag import Dag, Decision, ReadySet
from rota.model.states import FAILURES, RunState, TaskState
from rota.store.base import AttemptRecord, Change, NewAttempt, RunChange, RunRecord

if TYPE_CHECKING:
    from rota.engine.runner import FlowRef, Runner


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class RunLoop:
    """The state of one :meth:`Runner.drive` call, split into small steps."""

    def __init__(
        self,
        runner: Runner,
        run: RunRecord,
        dag: Dag,
        flow: FlowRef,
        writer: BatchWriter,
        callbacks: CallbackRunner,
    ) -> None:
        self.r = runner
        self.run_rec = run
        self.dag = dag
        self.flow = flow
        self.writer = writer
        self.callbacks = callbacks
        self.attempt: dict[str, AttemptRecord] = {}
        self.state: dict[str, TaskState] = {}
        self.outputs: dict[str, str | None] = {}
        self.ready: deque[str] = deque()
        self.waiting: list[tuple[datetime, str]] = []  # (not_before, task) heap
        self.in_flight: dict[int, str] = {}
        self.dispatched: dict[int, datetime] = {}
        self.pending: list[Change] = []
        self.hooks: list[Hook] = []
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
            if rec.state is TaskState.SUCCESS and tid in self.dag.tasks:
                finished[tid] = rec.state
                self.outputs[tid] = rec.output_path
        self.ready_set = ReadySet(self.dag, finished)
        now = self.r.clock.now()
        self.writer.put(
            [], [RunChange(self.run_rec.run_id, self.run_rec.state, RunState.RUNNING, now)]
        )
        self.apply_decisions(self.ready_set.initial())

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            self.release_due()
            self.submit_ready()
            self.flush()
            if not (self.in_flight or self.waiting or self.ready):
                break
            self.handle(self.r.executor.poll(self.poll_timeout()))
            self.report_progress()
        self.report_progress(force=True)

    def poll_timeout(self) -> float:
        if not self.waiting:
            return 0.05
        due = (self.waiting[0][0] - self.r.clock.now()).total_seconds()
        return max(0.0, min(0.05, due))

    def release_due(self) -> None:
        """Queue the retries whose back-off has passed."""
        now = self.r.clock.now()
        while self.waiting and self.waiting[0][0] <= now:
            _, tid = heapq.heappop(self.waiting)
            self.change(tid, TaskState.QUEUED, {"queued_at": now})
            self.ready.append(tid)

    def submit_ready(self) -> None:
        free = self.r.executor.capacity()
        while self.ready and free > 0:
            tid = self.ready.popleft()
            rec = self.attempt[tid]
            self.dispatched[rec.id] = self.r.clock.now()
            self.in_flight[rec.id] = tid
            self.r.executor.submit(self.attempt_spec(tid, rec))
            self.r.options.faults.hit("claimed")
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
            timeout=spec.timeout.total_seconds() if spec.timeout else None,
            checkpoint_path=str(
                checkpoint_path(self.r.checkpoints_dir, run_id, tid, rec.map_index)
            ),
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
            fields0 = {"started_at": _ts(out.started_at), "worker": out.worker}
            self.change(tid, TaskState.RUNNING, fields0)
        fields = _outcome_fields(out)
        if out.ok and not out.skipped:
            if out.output_path:
                self.r.options.faults.hit("output_written")
            self.outputs[tid] = out.output_path
            self.finish_task(tid, TaskState.SUCCESS, fields, out)
            self.hooks.append(lambda: self.r.options.faults.hit("success_committed"))
        elif out.skipped:
            self.finish_task(tid, TaskState.SKIPPED, fields, out)
        elif self.should_retry(tid, out):
            self.retry(tid, out, fields)
        else:
            self.finish_task(tid, TaskState.FAILED, fields, out)

    def finish_task(
        self, tid: str, new: TaskState, fields: dict[str, Any], out: AttemptOutcome
    ) -> None:
        self.change(tid, new, fields)
        event = {TaskState.SUCCESS: "success", TaskState.FAILED: "failure"}.get(new)
        if event is not None:
            self.fire(tid, event, out)
        self.apply_decisions(self.ready_set.done(tid, new))

    def should_retry(self, tid: str, out: AttemptOutcome) -> bool:
        policy = self.dag.tasks[tid].retry
        mro = out.error.mro if out.error is not None else ()
        return policy.should_retry(self.attempt[tid].try_number, mro)

    def retry(self, tid: str, out: AttemptOutcome, fields: dict[str, Any]) -> None:
        """Record the failed attempt as up_for_retry and create the next one, waiting its delay.

        The two writes are one transaction, made at once (not batched): a runner killed during
        the back-off finds the next attempt and its ``not_before`` in the store.
        """
        rec = self.attempt[tid]
        spec = self.dag.tasks[tid]
        delay = spec.retry.delay_after(rec.try_number, self.r.rng)
        self.flush()
        self.writer.flush()
        old = Change(rec.id, self.state[tid], TaskState.UP_FOR_RETRY, fields)
        nxt = NewAttempt(
            self.run_rec.run_id,
            tid,
            rec.try_number + 1,
            spec.op.kind,
            spec.op.code_hash(),
            rec.map_index,
            not_before=_ts(out.finished_at) + delay,
        )
        (new,) = self.r.store.add_attempts([old], [nxt], at=self.r.clock.now())
        self.attempt[tid] = new
        self.state[tid] = TaskState.SCHEDULED
        self.fire(tid, "retry", out, try_number=rec.try_number)
        self.enqueue(tid)

    def apply_decisions(self, decisions: list[Decision]) -> None:
        for d in decisions:
            if d.state is TaskState.QUEUED:
                self.enqueue(d.task_id)
            else:
                self.change(d.task_id, d.state, {})

    def enqueue(self, tid: str) -> None:
        """Queue *tid* now, or keep it scheduled until its ``not_before`` (a retry's back-off)."""
        not_before = self.attempt[tid].not_before
        if not_before is not None and not_before > self.r.clock.now():
            heapq.heappush(self.waiting, (not_before, tid))
            return
        self.change(tid, TaskState.QUEUED, {"queued_at": self.r.clock.now()})
        self.ready.append(tid)

    def change(self, tid: str, new: TaskState, fields: dict[str, Any]) -> None:
        rec = self.attempt[tid]
        self.pending.append(Change(rec.id, self.state[tid], new, fields))
        self.state[tid] = new

    def flush(self) -> None:
        if self.pending or self.hooks:
            self.writer.put(self.pending, (), self.hooks)
            self.pending = []
            self.hooks = []

    # --- callbacks -----------------------------------------------------------------------------
    def fire(
        self, tid: str, event: str, out: AttemptOutcome, *, try_number: int | None = None
    ) -> None:
        callbacks = self.dag.tasks[tid].callbacks.for_event(event)
        if not callbacks:
            return
        err = out.error
        ctx = CallbackContext(
            event=event,
            run_id=self.run_rec.run_id,
            flow=self.dag.name,
            state={"success": "success", "failure": "failed", "retry": "up_for_retry"}[event],
            task_id=tid,
            try_number=try_number or self.attempt[tid].try_number,
            error_type=err.type_name if err else None,
            error_message=err.message if err else None,
            traceback=err.traceback if err else None,
            params=self.dag.params,
        )
        self.hooks.append(lambda: self.callbacks.fire(callbacks, ctx))

    # --- the end -------------------------------------------------------------------------------
    def finish(self) -> None:
        failed = any(s in FAILURES for t, s in self.state.items() if t in self.dag.tasks)
        final = RunState.FAILED if failed else RunState.SUCCESS
        now = self.r.clock.now()
        change = RunChange(self.run_rec.run_id, RunState.RUNNING, final, now)
        callbacks = self.dag.callbacks.for_event("failure" if failed else "success")
        ctx = CallbackContext(
            event="run_failure" if failed else "run_success",
            run_id=self.run_rec.run_id,
            flow=self.dag.name,
            state=final.value,
            params=self.dag.params,
        )
        self.writer.put([], [change], [lambda: self.callbacks.fire(callbacks, ctx)])

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
        from rota.engine.runner import Progress

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


def _outcome_fields(out: AttemptOutcome) -> dict[str, Any]:
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
    return fields
