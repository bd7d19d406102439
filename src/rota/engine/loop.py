"""The per-run loop of the runner: ready tasks to the executor, its reports to state changes.

Each step takes the decisions of the :class:`~rota.model.dag.ReadySet` counter, submits what is
ready, and turns executor events into state changes queued on the :class:`BatchWriter`. A failed
attempt whose retry policy allows it is followed by a new attempt that waits (persisted in the
store as ``not_before``) until its back-off has passed. While nothing is due, the loop blocks in
the executor's ``poll`` until the next retry or sensor poke is due or an executor event arrives:
waiting costs no CPU.

A branch or short-circuit task's choice is applied when its success is recorded (the tasks it
skips first, then its success), and the run's state is decided by its leaf tasks, as in Airflow
(:func:`rota.model.dag.run_succeeded`).

Ready work waits in a heap by effective priority weight (:mod:`rota.model.priority`), first come
first served among equals, and is dispatched once the store grants its claim on its pool's slots
(:mod:`rota.engine.slots`); the flow's ``max_active_tasks`` bounds what one run has in flight.

Work is keyed by (task id, map index): -1 for a plain task or a mapped task as a whole, 0..n-1
for the instances a mapped task fans out into once the lengths of its inputs are known.

What the loop knows of its attempts is one :class:`~rota.engine.book.RunBook`, shared with its
helpers: :class:`~rota.engine.mapping.Mapper` (fan-out), :class:`~rota.engine.cache.RunCache`
(reuse) and the sensor functions (engine/sensing.py) each take the book and the few callables
they need, never the loop, so no helper imports this module. Each step costs O(what it handles):
nothing scans the run's tasks per task, and a step's changes are one commit of the writer.
"""

from __future__ import annotations

import heapq
import itertools
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rota.engine import datasets
from rota.engine.book import Key, RunBook
from rota.engine.cache import RunCache, try_cache
from rota.engine.callbacks import CallbackRunner
from rota.engine.dispatch import Dispatcher, Ready, submit_ready
from rota.engine.ending import RunSite, end_run, outcome_fields, task_callbacks
from rota.engine.mapping import Mapper, expand_args, inline_limit, map_sources
from rota.engine.progress import progress_of
from rota.engine.refs import outcome_ref, record_ref
from rota.engine.resume import counted_tries
from rota.engine.sensing import (
    SENSOR_TIMEOUT,
    SensorBook,
    Waiting,
    is_sensor,
    requeue,
    reschedule,
)
from rota.engine.slots import SlotBook
from rota.engine.steer import CancelWatch, stop_loop
from rota.engine.writer import BatchWriter
from rota.executors.base import (
    AttemptOutcome,
    AttemptSpec,
    AttemptStarted,
    InputRef,
    StoredRef,
)
from rota.model.branching import BRANCH_SKIP, Choice, skip_reason, skipped_by
from rota.model.dag import Dag, Decision, ReadySet
from rota.model.priority import effective_weights
from rota.model.safetext import safe_text
from rota.model.states import SUCCEEDED, TERMINAL, RunState, TaskState
from rota.store.base import AttemptRecord, Change, NewAttempt, RunChange, RunRecord

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rota.engine.runner import FlowRef, Runner

__all__ = ["IDLE_WAIT", "PROGRESS_WAIT", "Key", "Ready", "RunLoop"]

IDLE_WAIT = 5.0
"""The longest the loop blocks in ``poll`` with nothing due, so that a store writer's error (a
lost lease) is seen within seconds."""
PROGRESS_WAIT = 1.0
"""The longest it blocks when a progress display is shown (its countdowns move every second)."""


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
        slots: SlotBook,
    ) -> None:
        self.r = runner
        self.run_rec = run
        self.dag = dag
        self.flow = flow
        self.writer = writer
        self.callbacks = callbacks
        self.book = RunBook(run.run_id)
        self.ready: list[Ready] = []  # a heap: highest weight first, then first come
        self._arrival = itertools.count()
        self.weights = effective_weights(dag)
        self.slots = slots
        self.waiting: Waiting = []  # (not_before, key) heap
        self.in_flight: dict[int, Key] = {}
        self.dispatched: dict[int, datetime] = {}
        self.sensors = SensorBook()
        self.modules = ((flow.module, flow.path),) if flow.module and flow.path else ()
        self.inputs = {tid: spec.data_inputs for tid, spec in dag.tasks.items()}
        self.map_sources = map_sources(dag)
        run_id = run.run_id
        self.dirs = (
            f"{runner.logs_dir}/{run_id}",
            f"{runner.checkpoints_dir}/{run_id}",
        )
        self._last_progress = 0.0
        self.cancel: CancelWatch | None = None
        """Set by the runner: a cancel asked of this run stops the loop (engine/steer.py)."""
        self.site = RunSite(dag, run.run_id, runner.ui_url, callbacks)
        now = runner.clock.now
        self.mapper = Mapper(
            self.book, dag, now, self._add_attempts, self.enqueue, self.note_datasets, self.settled
        )
        store = runner.store
        self.cache = RunCache(
            self.book,
            dag,
            self.inputs,
            lambda tid, key, since: store.find_cached(tid, key, since=since),
            runner.artifacts.exists,
            runner.options.use_cache,
            now,
            self._current_spec,
            self.mapper.instance_done,
            self.note_datasets,
            self.settled,
        )
        self.dispatcher = Dispatcher(
            self.book,
            dag,
            self.ready,
            self.weights,
            slots,
            self.in_flight,
            writer.can_dispatch,
            runner.executor.capacity,
            self.dispatch,
            self.refused,
            self.give_back,
            lambda: runner.clock.now().timestamp(),
        )

    # --- what the helpers are given ------------------------------------------------------------
    @property
    def attempt(self) -> dict[Key, AttemptRecord]:
        """The current attempt of each key (the book's)."""
        return self.book.attempt

    @property
    def state(self) -> dict[Key, TaskState]:
        """The state of each key's current attempt, as committed or queued (the book's)."""
        return self.book.state

    def change(self, key: Key, new: TaskState, fields: dict[str, Any]) -> None:
        """Queue the move of *key* to *new* (:meth:`RunBook.change`)."""
        self.book.change(key, new, fields)

    def settled(self, tid: str, state: TaskState) -> None:
        """Count plain or mapped task *tid*, ended in *state*, for its downstreams; act on what
        that decides (O(its out-degree), and what cascades)."""
        self.apply_decisions(self.ready_set.done(tid, state))

    def _add_attempts(self, new: Sequence[NewAttempt]) -> list[AttemptRecord]:
        """Insert *new* attempts once everything queued before is committed (one transaction)."""
        self.flush()
        self.writer.flush()
        return self.r.store.add_attempts([], new, at=self.r.clock.now())

    def _current_spec(self, key: Key) -> AttemptSpec:
        return self.attempt_spec(key, self.book.attempt[key])

    # --- setup ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Read the run's attempts (one query), and take the ready set's first decisions."""
        book = self.book
        records = self.r.store.attempts(self.run_rec.run_id)
        book.tries = counted_tries(records)
        latest: dict[Key, AttemptRecord] = {}
        for rec in records:
            key = (rec.task_id, rec.map_index)
            self.sensors.note(key, rec)
            current = latest.get(key)
            if current is None or rec.try_number > current.try_number:
                latest[key] = rec
        finished: dict[str, TaskState] = {}
        instances: dict[str, dict[int, StoredRef | None]] = {}
        for key, rec in latest.items():
            book.load(key, rec)
            tid, index = key
            if tid not in self.dag.tasks:
                continue
            if index >= 0:
                instances.setdefault(tid, {})[index] = record_ref(rec)
            elif rec.state in TERMINAL:
                finished[tid] = rec.state  # a resume keeps them (e.g. skips a kept branch chose)
            if rec.state in SUCCEEDED and index < 0:
                book.booked(tid, record_ref(rec), rec.output_length, rec.output_hash)
        for tid, state in finished.items():
            if state in SUCCEEDED and self.dag.tasks[tid].mapped:
                found = instances.get(tid, {})
                book.outputs[tid] = tuple(found[i] for i in sorted(found))
        self.ready_set = ReadySet(self.dag, finished)
        now = self.r.clock.now()
        run_id = self.run_rec.run_id
        self.writer.put([], [RunChange(run_id, self.run_rec.state, RunState.RUNNING, now)])
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
            if self.cancel is not None and self.cancel.asked():
                # rota cancel / the UI: raises RunCancelled
                stop_loop(self.book, self.run_rec, self.writer, self.r.clock.now(), self.cancel.by)
        self.report_progress(force=True)

    def poll_timeout(self) -> float:
        """Seconds to block in ``poll``: until the next retry or poke is due, or the next look
        for pool slots other runs hold (an executor event ends the wait sooner), at most
        PROGRESS_WAIT with a display, else IDLE_WAIT."""
        cap = PROGRESS_WAIT if self.r.on_progress is not None else IDLE_WAIT
        hint = self.slots.wait_hint() if self.ready else None
        if hint is not None:
            cap = min(cap, hint)
        if not self.waiting:
            return cap
        due = (self.waiting[0][0] - self.r.clock.now()).total_seconds()
        return max(0.0, min(cap, due))

    def release_due(self) -> None:
        """Queue the retries whose back-off has passed."""
        now = self.r.clock.now()
        while self.waiting and self.waiting[0][0] <= now:
            _, key = heapq.heappop(self.waiting)
            if self.state[key] is TaskState.SENSING:
                # its move to sensing must be committed first: that commit gives back the slots
                # of its last poke, and must not take those its next poke is about to claim
                self.flush()
                self.writer.flush()
                requeue(self.sensors, self.book, key)
            else:
                self.change(key, TaskState.QUEUED, {"queued_at": now})
            self.push_ready(key)

    def push_ready(self, key: Key) -> None:
        """Put *key* among the ready tasks, by its effective priority weight."""
        heapq.heappush(self.ready, (-self.weights[key[0]], next(self._arrival), key))
        self.slots.changed()

    def submit_ready(self) -> None:
        """Dispatch the most urgent ready tasks that get slots (engine/dispatch.py); nothing new
        starts while the store is out of reach (the writer holds what ended)."""
        submit_ready(self.dispatcher)

    def refused(self, key: Key, out: AttemptOutcome) -> None:
        """Fail *key*'s attempt that no pool can take (never started)."""
        self.finish(key, TaskState.FAILED, outcome_fields(out), out)

    def give_back(self, seqs: Sequence[int]) -> None:
        """Give back, through the writer thread, the pool slots numbered *seqs*."""
        store, run_id, owner = self.r.store, self.run_rec.run_id, str(self.r.me)
        self.book.hooks.append(lambda: store.release_slots(run_id, owner, seqs))
        self.flush()

    def dispatch(self, key: Key) -> None:
        """Hand *key*'s attempt to the executor (it holds its slots)."""
        rec = self.attempt[key]
        self.dispatched[rec.id] = self.r.clock.now()
        self.in_flight[rec.id] = key
        self.r.executor.submit(self.attempt_spec(key, rec))
        self.r.options.faults.hit("claimed")

    def attempt_spec(self, key: Key, rec: AttemptRecord) -> AttemptSpec:
        tid, index = key
        spec = self.dag.tasks[tid]
        kwargs = spec.kwargs
        inputs = [self._input_ref(up) for up in self.inputs[tid]]
        if index >= 0:
            kwargs, extra = expand_args(spec, index, self.book.outputs)
            inputs.extend(extra)
        name = tid if index < 0 else f"{tid}@{index}"
        checkpoints = self.dirs[1]
        run = self.run_rec
        sensing = self.sensors.spec_fields(key) if is_sensor(spec.op) else {}
        return AttemptSpec(
            attempt_id=rec.id,
            run_id=self.run_rec.run_id,
            flow=self.flow.name,
            task_id=tid,
            map_index=index,
            try_number=rec.try_number,
            op=spec.op,
            args=spec.args,
            kwargs=kwargs,
            inputs=tuple(inputs),
            artifacts=self.r.artifacts_root,
            inline_limit=inline_limit(tid, self.map_sources, self.r.options.inline_output_max),
            serializer=spec.serializer,
            log_path=self.log_path(key),
            params=self.dag.params,
            modules=self.modules,
            timeout=spec.timeout.total_seconds() if spec.timeout else None,
            checkpoint_path=f"{checkpoints}/{name}",
            logical_date=run.logical_date or run.created_at,
            data_interval_start=run.data_interval_start or run.created_at,
            data_interval_end=run.data_interval_end or run.created_at,
            resources=spec.resources,
            downstream=self.dag.downstream(tid),
            **sensing,
        )

    def _input_ref(self, up: str) -> InputRef:
        out = self.book.outputs.get(up)
        if isinstance(out, tuple):
            return InputRef(up, None, parts=out)
        return InputRef(up, out)

    def handle(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, AttemptStarted):
                self.on_started(event)
            else:
                self.on_outcome(event)

    def on_started(self, ev: AttemptStarted) -> None:
        key = self.in_flight[ev.attempt_id]
        fields: dict[str, Any] = {
            "dispatched_at": self.dispatched.get(ev.attempt_id),
            "log_path": self.log_path(key),  # written from now on: rota tasks logs -f reads it
        }
        self.started(key, ev, fields)

    def log_path(self, key: Key) -> str:
        """Where the current attempt of *key* writes its log."""
        tid, index = key
        name = tid if index < 0 else f"{tid}@{index}"
        return f"{self.dirs[0]}/{name}/{self.attempt[key].try_number}.log"

    def started(self, key: Key, ev: AttemptStarted, fields: dict[str, Any]) -> None:
        """Record that the attempt of *key* began; count a try unless it is a sensor's re-poke."""
        fields.update(started_at=_ts(ev.at), worker=ev.worker)
        new_try = True
        if is_sensor(self.dag.tasks[key[0]].op):
            new_try = self.sensors.on_started(key, ev.attempt_id, _ts(ev.at), fields)
        if new_try:
            tries = self.book.tries
            tries[key] = tries.get(key, 0) + 1
        self.change(key, TaskState.RUNNING, fields)

    def on_outcome(self, out: AttemptOutcome) -> None:
        key = self.in_flight.pop(out.attempt_id)
        self.slots.ended(out.attempt_id)
        self.dispatched.pop(out.attempt_id, None)
        if self.state[key] is TaskState.QUEUED:  # its worker was lost before it reported a start
            self.started(key, AttemptStarted(out.attempt_id, out.started_at, out.worker), {})
        fields = outcome_fields(out)
        fields.update(self.cache.fields.pop(key, {}))
        if out.ok and out.reschedule_at is not None:
            reschedule(self.sensors, self.book, self.waiting, key, out.reschedule_at, fields)
        elif out.ok and not out.skipped:
            if out.output_path:
                self.r.options.faults.hit("output_written")
            self.finish(key, TaskState.SUCCESS, fields, out)
            self.book.hooks.append(lambda: self.r.options.faults.hit("success_committed"))
        elif out.skipped:
            self.finish(key, TaskState.SKIPPED, fields, out)
        elif self.should_retry(key, out):
            self.retry(key, out, fields)
        else:
            self.finish(key, TaskState.FAILED, fields, out)

    def finish(
        self, key: Key, new: TaskState, fields: dict[str, Any], out: AttemptOutcome | None
    ) -> None:
        """Record that the attempt of *key* ended in *new*, and what that unlocks."""
        tid, index = key
        self.change(key, new, fields)
        event = {TaskState.SUCCESS: "success", TaskState.FAILED: "failure"}.get(new)
        if event is not None and out is not None:
            self.fire(key, event, out)
        if index >= 0:
            self.mapper.instance_done(tid, index, new, outcome_ref(out) if out else None)
            return
        if new is TaskState.SUCCESS and not self.dag.tasks[tid].mapped and out is not None:
            self.book.booked(tid, outcome_ref(out), out.output_length, out.output_hash)
        if new is TaskState.SUCCESS:
            self.note_datasets(tid)
            if out is not None and out.choice is not None:
                self.apply_choice(tid, out.choice)
        self.settled(tid, new)

    def apply_choice(self, tid: str, choice: Choice) -> None:
        """Skip what branch or short-circuit task *tid* chose to skip (before its success counts
        for its downstreams, so that the tasks it skips are not decided by their rules first)."""
        skipped = skipped_by(self.dag, tid, choice)
        self.apply_decisions(self.ready_set.skip(skipped, skip_reason(tid, choice)))

    def should_retry(self, key: Key, out: AttemptOutcome) -> bool:
        policy = self.dag.tasks[key[0]].retry
        mro = out.error.mro if out.error is not None else ()
        if SENSOR_TIMEOUT in mro:
            return False
        return policy.should_retry(self.book.tries.get(key, 1), mro)

    def retry(self, key: Key, out: AttemptOutcome, fields: dict[str, Any]) -> None:
        """Record the failed attempt as up_for_retry and create the next one, waiting its delay.

        The two writes are one transaction, made at once (not batched): a runner killed during
        the back-off finds the next attempt and its ``not_before`` in the store.
        """
        tid, index = key
        rec = self.attempt[key]
        spec = self.dag.tasks[tid]
        delay = spec.retry.delay_after(self.book.tries.get(key, 1), self.r.rng)
        self.flush()
        self.writer.flush()
        old = Change(rec.id, self.state[key], TaskState.UP_FOR_RETRY, fields)
        nxt = NewAttempt(
            self.run_rec.run_id,
            tid,
            rec.try_number + 1,
            spec.op.kind,
            spec.op.code_hash(),
            index,
            not_before=_ts(out.finished_at) + delay,
        )
        (new,) = self.r.store.add_attempts([old], [nxt], at=self.r.clock.now())
        self.book.load(key, new)
        self.fire(key, "retry", out, try_number=rec.try_number)
        self.enqueue(key)

    def apply_decisions(self, decisions: list[Decision]) -> None:
        for d in decisions:
            key = (d.task_id, -1)
            if d.state is not TaskState.QUEUED:
                why = {"error_type": BRANCH_SKIP if d.chosen else None, "error_message": d.reason}
                self.change(key, d.state, why)
            elif self.dag.tasks[d.task_id].mapped:
                self.mapper.expand(d.task_id)
            else:
                self.enqueue(key)

    def enqueue(self, key: Key) -> None:
        """Queue *key* now, or keep it scheduled until its ``not_before`` (a retry's back-off)."""
        not_before = self.attempt[key].not_before
        if not_before is not None and not_before > self.r.clock.now():
            heapq.heappush(self.waiting, (not_before, key))
            return
        self.change(key, TaskState.QUEUED, {"queued_at": self.r.clock.now()})
        if self.dag.tasks[key[0]].cache is not None and try_cache(self.cache, key):
            return
        self.push_ready(key)

    def note_datasets(self, tid: str) -> None:
        """Once committed, record the versions *tid* produced and the datasets it read."""
        spec = self.dag.tasks[tid]
        if spec.outlets or spec.inlets:
            store, run_id, now = self.r.store, self.run_rec.run_id, self.r.clock.now()
            self.book.hooks.append(lambda: datasets.record(store, spec, run_id, now))

    def flush(self) -> None:
        """Hand what the book queued to the writer: the next commit (one per step)."""
        if self.book.pending or self.book.hooks:
            changes, hooks = self.book.take()
            self.writer.put(changes, (), hooks)

    # --- callbacks and the end ------------------------------------------------------------------
    def fire(
        self, key: Key, event: str, out: AttemptOutcome, *, try_number: int | None = None
    ) -> None:
        """Queue *key*'s callbacks for *event*, to run once its change is committed."""
        tries = try_number or self.book.attempt[key].try_number
        hook = task_callbacks(self.site, key, event, out, try_number=tries)
        if hook is not None:
            self.book.hooks.append(hook)

    def finish_run(self) -> None:
        """Record the run's end: success when every leaf succeeded or was skipped (Airflow)."""
        end_run(self.site, self.book.state, self.r.store, self.writer, self.r.clock.now())

    def abort(self) -> None:
        """Mark unfinished queued and running attempts, and the run, as interrupted (best effort).

        Changes made before the interruption are committed first, so the conditional writes below
        find the states they expect.
        """
        if self.writer.closed:  # interrupted while the run's end was being committed: it ended
            return
        now = self.r.clock.now()
        for key, state in self.state.items():
            if state in (TaskState.QUEUED, TaskState.RUNNING, TaskState.SENSING):
                self.change(key, TaskState.INTERRUPTED, {"finished_at": now})
        run_change = RunChange(self.run_rec.run_id, RunState.RUNNING, RunState.INTERRUPTED, now)
        try:
            changes, _ = self.book.take()  # the hooks are dropped: nothing more is fired
            self.writer.put(changes, [run_change])
            self.writer.close()
        except Exception as err:  # the interruption matters more; a later resume sorts it out
            print(f"rota: could not record the interruption: {safe_text(err)}", file=sys.stderr)

    def report_progress(self, *, force: bool = False) -> None:
        hook = self.r.on_progress
        if hook is None:
            return
        now = self.r.clock.monotonic()
        if not force and now - self._last_progress < self.r.progress_every:
            return
        self._last_progress = now
        now_at = self.r.clock.now()
        hook(progress_of(self.book, len(self.dag), self.in_flight.values(), self.waiting, now_at))
