"""The Store protocol and the records it speaks in.

The store is the truth (DESIGN.md, invariant 1): every state change of a run or a task attempt is a
committed transaction made through :meth:`Store.apply`, which checks each change against the state
machine in :mod:`rota.model.states` and writes it only if the row is still in the expected state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from rota.errors import CorruptRow
from rota.model.allocation import Contention
from rota.model.reliability import FlowHistory
from rota.model.states import RunState, TaskState


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """A flow the store has seen: its name, where it was loaded from and its code hash."""

    name: str
    path: str
    code_hash: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of a flow."""

    run_id: str
    flow: str
    state: RunState
    params: Mapping[str, Any]
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    flow_path: str = ""
    flow_hash: str = ""
    owner: str | None = None
    heartbeat_at: datetime | None = None
    logical_date: datetime | None = None
    """The start of the schedule interval the run is for (None: a plain ``rota run``)."""
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    run_type: str = "manual"
    """How the run was made: ``manual`` (rota run / trigger), ``scheduled`` or ``backfill``."""
    param_changes: Sequence[Mapping[str, Any]] | None = None
    """Parameters ``rota resume -p`` changed, oldest first: ``{"at": ISO time, "changes":
    {name: {"from": old, "to": new}}}`` (secrets as ``***``)."""


RUN_TYPES = ("manual", "scheduled", "backfill")


@dataclass(frozen=True, slots=True)
class RunTiming:
    """The schedule facts of a new run: its logical date, data interval and how it was made."""

    logical_date: datetime
    data_interval_start: datetime
    data_interval_end: datetime
    run_type: str = "scheduled"
    triggered_by: tuple[str, ...] = ()
    """Dataset URIs a dataset-scheduled run is made for: their latest versions are recorded as
    read by the run (task id ``(trigger)``) in the run's own transaction."""


@dataclass(frozen=True, slots=True)
class PruneCandidate:
    """A run old enough for ``rota runs prune``, and what deleting it would free."""

    run_id: str
    flow: str
    state: RunState
    ended_at: datetime
    """When it ended (when it was made, if it never started)."""
    attempts: int
    output_bytes: int
    """Bytes of the outputs it stored itself (a cache hit's output belongs to another run)."""
    reused_by: tuple[str, ...] = ()
    """Other runs whose cache hits read its outputs: it is kept while they are."""


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of one task in one run (a task that is retried has several).

    The timestamps split an attempt's life into four waits: ``queued_at`` (the engine found it
    ready) to ``dispatched_at`` (handed to the executor) is the queue wait; to ``started_at`` (a
    worker began it) the dispatch; to ``finished_at`` (done, output durable) the execution; to
    ``committed_at`` (the outcome committed to the store) the hand-off.
    """

    id: int
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    state: TaskState
    operator: str = ""
    code_hash: str = ""
    not_before: datetime | None = None
    queued_at: datetime | None = None
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    committed_at: datetime | None = None
    worker: str | None = None
    exit_code: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    output_path: str | None = None
    output_size: int | None = None
    output_length: int | None = None
    output_hash: str | None = None
    output_serializer: str | None = None
    output_inline: bytes | None = None
    """A small output's bytes, kept in this row (``output_path`` is then an ``inline:`` name)."""
    cache_key: str | None = None
    cache_parts: Mapping[str, Any] | None = None
    cached_from: int | None = None
    log_path: str | None = None
    first_poke_at: datetime | None = None
    """A sensor's first poke: its timeout counts from here, across restarts."""
    pokes: int = 0
    """How many times a sensor attempt poked (pokes never count as tries)."""
    cleared_at: datetime | None = None
    """When ``rota clear`` made this attempt: the task's retry budget starts again here."""


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task row to create with a run (first attempt, state ``scheduled``)."""

    task_id: str
    operator: str
    code_hash: str
    map_index: int = -1
    upstream: tuple[str, ...] = ()
    """The task's direct upstream ids: the store keeps the run's graph, which the UI draws."""


@dataclass(frozen=True, slots=True)
class DatasetVersion:
    """Version *version* of dataset *uri*, produced by *task_id* in *run_id*."""

    uri: str
    version: int
    content_hash: str | None
    run_id: str
    task_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DatasetUse:
    """Task *task_id* of *run_id* read dataset *uri* (at *version*, the latest then)."""

    uri: str
    version: int | None
    run_id: str
    task_id: str
    used_at: datetime


@dataclass(frozen=True, slots=True)
class NewAttempt:
    """A further attempt of a task (a retry, or a re-run on resume), created ``scheduled``.

    ``not_before`` persists a retry's back-off: no runner starts it earlier, even after a restart.
    ``cleared_at`` marks an attempt made by ``rota clear``: as in Airflow, a cleared task has its
    full retry budget again, while a plain resume keeps counting the tries before it.
    """

    run_id: str
    task_id: str
    try_number: int
    operator: str
    code_hash: str
    map_index: int = -1
    not_before: datetime | None = None
    cleared_at: datetime | None = None
    """Set by ``rota clear``: the attempt starts a full retry budget (earlier tries not counted)."""
    marked: TaskState | None = None
    """Set by ``rota mark``: the attempt is made already ended in this state (success or failed)
    at ``marked_at``, without running, as Airflow's "mark success" and "mark failed"."""
    marked_at: datetime | None = None


ATTEMPT_FIELDS = frozenset(
    {
        "queued_at",
        "dispatched_at",
        "started_at",
        "finished_at",
        "worker",
        "exit_code",
        "error_type",
        "error_message",
        "error_traceback",
        "output_path",
        "output_size",
        "output_length",
        "output_hash",
        "output_serializer",
        "output_inline",
        "cache_key",
        "cache_parts",
        "cached_from",
        "log_path",
        "first_poke_at",
        "pokes",
    }
)
"""Columns a :class:`Change` may set besides the state (``committed_at`` is set by the store)."""


@dataclass(frozen=True, slots=True)
class Change:
    """Move attempt *attempt_id* from *expect* to *new*, setting *fields* (see ATTEMPT_FIELDS)."""

    attempt_id: int
    expect: TaskState
    new: TaskState
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunChange:
    """Move run *run_id* from *expect* to *new* at time *at*."""

    run_id: str
    expect: RunState
    new: RunState
    at: datetime


@dataclass(frozen=True, slots=True)
class PoolRecord:
    """A pool and its use now: slots held by queued or running attempts, and waiting claims."""

    name: str
    slots: int
    """Its size (-1: no limit)."""
    description: str
    updated_at: datetime
    running: int = 0
    """Slots held by attempts dispatched or running (Airflow's occupied slots)."""
    waiting: int = 0
    """Attempts ready to run that wait for its slots (or for another limit)."""

    @property
    def open(self) -> int | None:
        """Slots free now (None: no limit); negative after the pool was made smaller."""
        return None if self.slots < 0 else self.slots - self.running


@dataclass(frozen=True, slots=True)
class SlotRequest:
    """The claim a runner files for one queued attempt (see :mod:`rota.model.allocation`)."""

    attempt_id: int
    run_id: str
    pool: str
    pool_slots: int
    priority: int
    run_date: datetime
    """The run's logical date (else its creation time): older runs go first among equals."""
    group: str = ""
    """The group whose limit it counts against: a scheduler's, for its ``--parallelism``."""
    group_limit: int | None = None


@dataclass(frozen=True, slots=True)
class SlotPass:
    """What one allocation pass gave a run."""

    granted: Mapping[int, int]
    """Attempt id -> the claim (its ``seq``) now held for it: a slot the run holds."""
    refused: Mapping[int, str]
    """Attempt id -> why its claim can never be granted (dropped)."""
    contention: Contention
    """What the pass saw of other runs' waiting claims (may a held slot be handed on?)."""


@dataclass(frozen=True, slots=True)
class Liveness:
    """Which claims are alive: those of *me*, and those whose owner holds its run's lease (the
    run's owner, with a heartbeat at or after *stale_before*) and is not known to be dead."""

    me: str
    stale_before: datetime
    is_dead: Callable[[str], bool] = field(default=lambda _owner: False)


@dataclass(frozen=True, slots=True)
class Lease:
    """A runner's hold on run *run_id* as *owner*: a write made under it commits only while
    *owner* still holds the run, and renews the run's heartbeat in the same transaction."""

    run_id: str
    owner: str


@dataclass(frozen=True, slots=True)
class Claim:
    """What a scheduler saw of a run it wants to claim: the claim succeeds only if the run still
    has this owner and heartbeat (None: none), so a runner that renewed meanwhile keeps it."""

    run_id: str
    owner: str | None
    heartbeat_at: datetime | None


class Store(Protocol):
    """The durable truth for flows, runs and attempts. Only implementations of this write SQL."""

    def upsert_flow(self, name: str, path: str, code_hash: str, at: datetime) -> None:
        """Record that flow *name* was loaded from *path* with *code_hash*."""

    def create_run(
        self,
        run_id: str,
        flow: str,
        params: Mapping[str, Any],
        tasks: Sequence[NewTask],
        at: datetime,
        *,
        flow_path: str = "",
        flow_hash: str = "",
        timing: RunTiming | None = None,
    ) -> RunRecord:
        """Create a run (``queued``) and one ``scheduled`` attempt per task, in one transaction.

        Raises:
            RunExists: the flow has a run for ``timing.logical_date`` already (nothing written).
            StoreError: *run_id* exists already.
        """

    def apply(
        self,
        changes: Sequence[Change],
        run_changes: Sequence[RunChange] = (),
        *,
        at: datetime,
        lease: Lease | None = None,
    ) -> None:
        """Commit *changes* and *run_changes* in one transaction, stamping ``committed_at=at``.

        Each change is checked against the state machine first; then each row is updated only if
        it is still in the expected state. If any row is not, nothing is written. Under a
        *lease*, the run's heartbeat is set to *at* in the same transaction, and nothing is
        written unless the lease's owner still holds the run.

        Raises:
            InvalidTransition: a change is not allowed by the state machine (nothing written).
            ConcurrentUpdate: a row was not in its expected state (nothing written).
            LeaseLost: another runner holds the run (nothing written).
        """

    def add_attempts(
        self,
        changes: Sequence[Change],
        new: Sequence[NewAttempt],
        run_changes: Sequence[RunChange] = (),
        *,
        at: datetime,
    ) -> list[AttemptRecord]:
        """Apply *changes* and *run_changes* and insert *new* attempts, in one transaction.

        Returns:
            The inserted attempts, in the order of *new*.

        Raises:
            InvalidTransition, ConcurrentUpdate: as for :meth:`apply` (nothing written).
            StoreError: an attempt with that try number exists already (nothing written).
        """

    def acquire(self, run_id: str, owner: str, *, expect: str | None, at: datetime) -> bool:
        """Make *owner* the runner of *run_id* if its owner is still *expect* (None: no owner).

        Returns:
            False when another runner changed the owner first.
        """

    def heartbeat(self, run_id: str, owner: str, at: datetime) -> bool:
        """Record that *owner* still drives *run_id*; False if it is no longer the owner."""

    def release(self, run_id: str, owner: str) -> None:
        """Give up ownership of *run_id* if *owner* holds it."""

    def claim_run(
        self, claim: Claim, owner: str, at: datetime, *, flow_limit: int | None = None
    ) -> bool:
        """Make *owner* the owner of an unfinished run if it is still as *claim* saw it, and (with
        *flow_limit*) if fewer than *flow_limit* other runs of its flow have an owner; atomic
        against other schedulers doing the same.

        Returns:
            False when the run changed meanwhile, finished, or its flow is at its limit.
        """

    def renew_claims(self, owner: str, run_ids: Sequence[str], at: datetime) -> int:
        """Set the heartbeat of those of *run_ids* that *owner* holds; how many it holds."""

    def find_cached(
        self, task_id: str, key: str, *, since: datetime | None = None
    ) -> AttemptRecord | None:
        """The latest succeeded attempt of *task_id* with cache key *key* (committed at or after
        *since*), whose output can be reused; None if there is none."""

    def cache_history(self, flow: str, task_id: str, limit: int = 20) -> list[AttemptRecord]:
        """Attempts of *task_id* in runs of *flow* that recorded a cache key, newest first."""

    def clear_cache(self, flow: str | None = None, task_id: str | None = None) -> int:
        """Forget cache keys (of one flow and/or task); returns how many entries were dropped."""

    def add_dataset_version(
        self, uri: str, content_hash: str | None, run_id: str, task_id: str, at: datetime
    ) -> DatasetVersion:
        """Record a new version of dataset *uri* (numbered 1, 2, ... per URI)."""

    def add_dataset_use(self, uri: str, run_id: str, task_id: str, at: datetime) -> DatasetUse:
        """Record that a task read dataset *uri* (its latest version at *at*)."""

    def dataset_versions(self, uri: str | None = None) -> list[DatasetVersion]:
        """Versions of one dataset (or of all), oldest first."""

    def dataset_uses(self, uri: str) -> list[DatasetUse]:
        """Every recorded read of dataset *uri*, oldest first."""

    def new_dataset_versions(self, uris: Sequence[str], since: datetime | None) -> dict[str, int]:
        """How many versions each of *uris* got after *since* (all of them if None)."""

    def get_run(self, run_id: str) -> RunRecord:
        """The run *run_id*.

        Raises:
            NotFound: no such run.
        """

    def list_runs(
        self,
        flow: str | None = None,
        limit: int | None = None,
        *,
        on_corrupt: Callable[[CorruptRow], None] | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first, optionally of one flow only.

        A row that cannot be read (see :class:`~rota.errors.CorruptRow`) is given to
        *on_corrupt* and left out, or raised when *on_corrupt* is None: never dropped silently.
        """

    def run_ids_with_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        """Ids of runs that start with *prefix* (case counts), newest first, at most *limit*."""

    def newest_run_id(
        self, flow: str | None = None, states: Sequence[RunState] | None = None
    ) -> str | None:
        """The newest run's id (of *flow*, in one of *states*, when given), if any."""

    def flow_names(self, prefix: str = "", limit: int = 100) -> list[str]:
        """Names of the flows the store knows (seen, or with runs) starting with *prefix*."""

    def old_runs(self, before: datetime, flow: str | None = None) -> list[PruneCandidate]:
        """Runs (of *flow*) that ended before *before* and are not queued or running, oldest
        first, with what each holds and the runs that reuse its outputs."""

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete the rows of *run_ids* (attempts, graph, cancel request) in one transaction;
        dataset versions and uses are kept. Returns the runs deleted."""

    def set_run_params(
        self, run_id: str, params: Mapping[str, Any], changes: Mapping[str, Any], at: datetime
    ) -> None:
        """Keep *params* (in their stored form) as run *run_id*'s parameters, and record
        *changes* (name -> ``{"from", "to"}``, secrets masked) in its ``param_changes``."""

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        """Every attempt of run *run_id*, ordered by task creation then try number."""

    def get_flow(self, name: str) -> FlowRecord | None:
        """The flow record named *name*, if the store has seen it."""

    def flow_history(self, flow: str, last: int) -> FlowHistory:
        """What the tasks of *flow* did in its last *last* finished (success or failed) runs:
        per task its tries and failed tries (a mapped task's instances counted apart), for
        ``rota stats``."""

    def runs_for_dates(
        self, flow: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[RunRecord]:
        """Runs of *flow* with a logical date in ``[start, end]``, oldest logical date first."""

    def latest_logical_date(self, flow: str, run_type: str = "scheduled") -> datetime | None:
        """The newest logical date of the runs of *flow* made as *run_type*, if any."""

    def runs_in_states(
        self, states: Sequence[RunState], flow: str | None = None
    ) -> list[RunRecord]:
        """Runs in one of *states* (of one flow only if given), oldest first."""

    def take_lock(self, name: str, holder: str, at: datetime, stale_after: float) -> str | None:
        """Hold lock *name* as *holder*: taken when free, held by *holder* already, or its holder's
        heartbeat is older than *stale_after* seconds. Returns None when held, else the holder."""

    def renew_lock(self, name: str, holder: str, at: datetime) -> bool:
        """Heartbeat lock *name*; False if *holder* no longer holds it."""

    def release_lock(self, name: str, holder: str) -> None:
        """Give up lock *name* if *holder* holds it."""

    def cancel_request(self, run_id: str) -> tuple[datetime, str] | None:
        """When and by whom a cancel of *run_id* was asked (``rota cancel``, the UI), if it was."""

    def request_cancel(self, run_id: str, by: str, at: datetime) -> None:
        """Ask the live runner of *run_id* to cancel it (it looks at its next heartbeat)."""

    def paused_flows(self) -> dict[str, datetime]:
        """Paused flows (``rota pause``), and when each was paused."""

    def set_paused(self, flow: str, paused: bool, at: datetime) -> bool:
        """Pause or unpause *flow*'s schedule; True when that changed something."""

    def claim_slots(
        self,
        run_id: str,
        wanted: Sequence[SlotRequest],
        *,
        release: Sequence[int],
        free: int,
        live: Liveness,
        at: datetime,
    ) -> SlotPass:
        """One allocation pass for run *run_id* driven by ``live.me``, in one transaction (atomic
        across runners).

        Gives back the held claims numbered *release*, drops the claims that are not alive, makes
        *wanted* the run's waiting claims (filing new ones, in order), and grants those
        :func:`rota.model.allocation.allocate` gives it with *free* attempts it can dispatch.
        """

    def release_slots(self, run_id: str, owner: str, seqs: Sequence[int] | None = None) -> None:
        """Give back the claims of *run_id* filed by *owner*: those numbered *seqs*, or all."""

    def pools(self, live: Liveness) -> list[PoolRecord]:
        """Every pool, by name, with the slots its live claims hold and wait for."""

    def set_pool(
        self, name: str, slots: int, *, description: str | None = None, at: datetime
    ) -> PoolRecord:
        """Create pool *name* with *slots* (-1: no limit), or resize it; a description of None
        keeps the one it has.

        Raises:
            PoolError: a bad name or size (nothing written).
        """

    def delete_pool(self, name: str, live: Liveness) -> None:
        """Delete pool *name*.

        Raises:
            PoolError: it is ``default_pool``, it does not exist, or live claims hold or wait for
                its slots (nothing written).
        """

    def close(self) -> None:
        """Release connections."""
