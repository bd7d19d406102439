"""What every operator shares: the execution context handed to it by the attempt runner."""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from rota.model import templating
from rota.model.secrets import Masker
from rota.model.states import RunState


class Checkpoint(Protocol):
    """A task's own progress store: the last object saved survives retries and resumes."""

    def save(self, obj: Any) -> None:
        """Replace the checkpoint with *obj*, atomically (a crash keeps the previous one)."""

    def load(self, default: Any = None) -> Any:
        """The last object saved by any attempt of this task in this run, else *default*."""


class NoCheckpoint:
    """The checkpoint of a context that has none: saving is an error."""

    def save(self, obj: Any) -> None:
        raise RuntimeError("this attempt has no checkpoint store")

    def load(self, default: Any = None) -> Any:
        return default


class RunView(Protocol):
    """A run as a store-reading sensor sees it."""

    @property
    def run_id(self) -> str: ...

    @property
    def state(self) -> RunState: ...


class StoreReader(Protocol):
    """What sensors that read the metadata store may ask of it (a narrow view of ``Store``).

    Only the engine has one: such sensors are poked in the engine's process, never on a worker
    (executors never touch the store).
    """

    def runs_for_dates(
        self, flow: str, start: datetime | None = None, end: datetime | None = None
    ) -> Sequence[RunView]: ...

    def new_dataset_versions(
        self, uris: Sequence[str], since: datetime | None
    ) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class ExecContext:
    """Facts about the attempt being run; a Python task with a ``ctx`` parameter receives it.

    Attributes:
        checkpoint: ``ctx.checkpoint.save(obj)`` / ``ctx.checkpoint.load()``.
        deadline: ``time.monotonic()`` value at which the attempt times out, if it has a timeout.
        own_session: whether a shell command gets its own process group (and enforces the deadline
            itself); False in worker processes, whose whole group the executor ends on a timeout.
        masker: the attempt's secrets; ``ctx.masker.redact(text)`` masks them in *text*
            (the attempt's log is masked when it ends in any case).
        store: the metadata store, read-only, for sensors that read it; set only when the
            engine pokes such a sensor itself (None on every worker).
        downstream: ids of the task's direct downstream tasks.
        artifacts: the artifact store's root (a folder or an fsspec URL); a container task
            mounts the run's folder of it when it is a local folder.
        map_index: the instance of a mapped task (-1 for a task that is not mapped).
    """

    run_id: str
    flow: str
    task_id: str
    try_number: int
    params: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: Checkpoint = field(default_factory=NoCheckpoint)
    deadline: float | None = None
    own_session: bool = True
    logical_date: datetime | None = None
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    first_poke_at: float | None = None
    pokes: int = 0
    masker: Masker = field(default_factory=Masker)
    store: StoreReader | None = None
    downstream: tuple[str, ...] = ()
    """Ids of the task's direct downstream tasks (what a branch task may choose among)."""
    artifacts: str = ""
    map_index: int = -1

    def template_vars(self) -> dict[str, Any]:
        """The variables this attempt's templates see (``rota.model.templating.template_vars``)."""
        return templating.template_vars(
            run_id=self.run_id,
            flow=self.flow,
            task_id=self.task_id,
            try_number=self.try_number,
            params=self.params,
            logical_date=self.logical_date,
            data_interval_start=self.data_interval_start,
            data_interval_end=self.data_interval_end,
        )

    def environ(self) -> dict[str, str]:
        """Environment variables that describe this attempt to a child process: its ids, the
        run's dates and its parameters (``rota.model.templating.environment``)."""
        return {
            **templating.environment(self.template_vars()),
            "ROTA_RUN_ID": self.run_id,
            "ROTA_FLOW": self.flow,
            "ROTA_TASK_ID": self.task_id,
            "ROTA_TRY_NUMBER": str(self.try_number),
        }


@dataclass(frozen=True, slots=True)
class RunReads:
    """What an attempt's result can depend on besides its arguments and inputs (for cache keys).

    Attributes:
        ambient: whether it can read every parameter and run date (a ``ctx`` parameter, or an
            environment holding them).
        rendered: its templates as this attempt renders them, by name.
    """

    ambient: bool
    rendered: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class ReadsRun(Protocol):
    """An operator that says what of the run its result can depend on."""

    def run_reads(self, ctx: ExecContext) -> RunReads:
        """What an attempt with *ctx* reads of the run (templates rendered with *ctx*).

        Raises:
            TemplateRenderError: a template does not render.
        """


@runtime_checkable
class LeavesLeftovers(Protocol):
    """An operator whose attempts start something outside the worker (a container, a pod) that
    can outlive a runner killed with SIGKILL. What it starts is labelled with the run, so that
    the runner that drives the run again (``rota resume``, a takeover) removes it first
    (``rota.engine.leftovers``)."""

    def leftovers_scope(self) -> str:
        """Operators with equal scopes find the same leftovers: one of them is asked."""

    def remove_leftovers(self, run_id: str) -> list[str]:
        """Remove what attempts of run *run_id* left running; the names of what was removed.

        Raises:
            Exception: the leftovers could not be listed or removed (logged, not fatal).
        """


def digest(*parts: str) -> str:
    """A short, stable hex digest of text parts."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _code_text(code: Any) -> str:
    """Bytecode with its constants (nested code objects too), names and variables, as text."""
    if code is None:
        return "None"
    consts = [
        _code_text(c) if hasattr(c, "co_code") else repr(c) for c in getattr(code, "co_consts", ())
    ]
    return repr((code.co_code, consts, code.co_names, code.co_varnames))


@functools.lru_cache(maxsize=4096)
def source_hash(fn: Callable[..., Any]) -> str:
    """Digest of *fn*'s source with comments, docstrings and formatting normalised away.

    Falls back to the compiled bytecode when the source is not available.
    """
    try:
        src = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError):
        code = getattr(fn, "__code__", None)
        return digest(getattr(fn, "__qualname__", repr(fn)), _code_text(code))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            node.decorator_list = []
            body = node.body
            first = body[0] if body else None
            is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            if is_doc and isinstance(first.value.value, str):  # type: ignore[union-attr]
                node.body = body[1:] or [ast.Pass()]
    return digest(ast.dump(tree, annotate_fields=False))
