"""One error tree for Rota, rooted at :class:`RotaError`.

User mistakes (:class:`UserError` and its children) are shown as one line and an exit code by the
CLI; everything else is a bug or an environment failure and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class RotaError(Exception):
    """Raised for every error Rota itself signals; the root of the tree."""


class UserError(RotaError):
    """Raised when input from a person is wrong; shown as one line, with file and line if known."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        super().__init__(self.__str__())

    def locate(self, file: str, line: int | None) -> UserError:
        """Attach the file (and line) the error comes from, unless one is known; return self."""
        if self.file is None:
            self.file = file
            self.line = line
            self.args = (str(self),)
        return self

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        return f"{where}{self.message}"


class DefinitionError(UserError):
    """Raised when a flow definition is invalid: bad id, duplicate id, bad argument, bad edge."""


class CycleError(DefinitionError):
    """Raised when a flow's graph has a cycle; ``path`` lists the cycle, first node repeated."""

    def __init__(self, path: Sequence[str], *, flow: str | None = None) -> None:
        self.path = tuple(path)
        where = f" in flow {flow!r}" if flow else ""
        super().__init__(f"cycle{where}: {' -> '.join(self.path)}")


class FlowLoadError(UserError):
    """Raised when a flow file cannot be loaded: syntax error, import error, exception at import."""


class FlowNotFound(UserError):
    """Raised when a path or flow name given by a person names no flow."""


class ParameterError(UserError):
    """Raised when a run parameter is unknown, missing or malformed."""


class SecretNotSet(UserError):
    """Raised when a ``rota.Secret``'s environment variable is not set where it is read (the
    worker running the attempt); ``name`` is the variable."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"secret {name}: no environment variable {name} where the task runs")


class ConfigError(UserError):
    """Raised when configuration (environment, options) is invalid."""


class UnsafeHome(ConfigError):
    """Raised when ROTA_HOME, its store file or its logs folder belongs to another user or can be
    written by group or others (or the home cannot be created); ``path`` is the one refused."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class PolicyError(DefinitionError):
    """Raised when a retry policy, timeout or trigger rule is given an invalid value."""


class PoolError(UserError):
    """Raised when a pool cannot be made, resized, deleted or used as asked: a bad name or size,
    ``default_pool`` deleted, a pool in use deleted, or a task naming a pool that does not exist
    (or needing more slots than it has)."""


class NotFound(UserError):
    """Raised when a run, task or attempt named by a person does not exist in the store."""


class AmbiguousRunId(UserError):
    """Raised when a run id prefix a person gave matches several runs; ``candidates`` lists
    (some of) them, newest first."""

    def __init__(self, message: str, candidates: Sequence[str]) -> None:
        super().__init__(message)
        self.candidates = tuple(candidates)


class InvalidTransition(RotaError):
    """Raised when a state change is not allowed by the state machine in ``model.states``."""

    def __init__(self, kind: str, old: str, new: str, *, what: str = "") -> None:
        self.kind = kind
        self.old = old
        self.new = new
        self.what = what
        label = f" ({what})" if what else ""
        super().__init__(f"illegal {kind} transition{label}: {old} -> {new}")


class StoreError(RotaError):
    """Raised when the metadata store cannot be opened, migrated or written."""


class CorruptRow(StoreError):
    """Raised when a stored row cannot be read as a record: a state the state machine does not
    know, params that are not a JSON object, garbage or a null where a value is required.
    ``kind`` and ``key`` name the row (``run``, its id; ``attempt``, its id), ``problem`` says
    what is wrong with it."""

    def __init__(self, kind: str, key: str, problem: str) -> None:
        self.kind = kind
        self.key = key
        self.problem = problem
        super().__init__(f"{kind} {key}: unreadable row: {problem}")


class DatabaseUrlError(ConfigError, StoreError):
    """Raised when ROTA_DATABASE_URL is malformed, names another database or a bad port, or names
    PostgreSQL while its driver (psycopg 3) is not installed."""


class RunExists(StoreError):
    """Raised when a flow already has a run for a logical date (the unique run key)."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class RunIdTaken(StoreError):
    """Raised when a new run's id is in use already (draw another id and try again)."""


class ConcurrentUpdate(StoreError):
    """Raised when a conditional write found a state other than the one expected."""


class StoreUnavailable(StoreError):
    """Raised when the database cannot be reached, or refused a transaction for a reason that
    passes: a lost or refused connection, a server shutting down or starting up, a deadlock, a
    serialization failure, a lock or statement timeout. The transaction was rolled back (unless
    the connection broke during its commit, when its outcome is unknown); try it again later."""


class LeaseLost(StoreError):
    """Raised when a runner's write is refused because it no longer holds its run's lease:
    another runner took the run over. Nothing of that write is stored."""


class LeaseExpired(LeaseLost):
    """Raised in a runner that could not renew its run's lease for most of the heartbeat timeout
    (the database was out of reach): it stops, because another scheduler may take the run over."""


class FlowNotCalled(UserError, TypeError):
    """Raised when a flow object is called like a function (``churn(n_rows=200)``): a flow is run
    with ``churn.run(n_rows=200)`` (or ``rota run FILE:churn``); its plain function is
    ``churn.fn``."""


class NoOutput(UserError):
    """Raised when the output of a task that did not succeed (or of a task a run does not have)
    is asked for, e.g. by ``RunResult.output``."""


class RunFailed(RotaError):
    """Raised by ``flow.run(raise_on_failure=True)`` and ``rota.resume(...)`` likewise when the run
    did not succeed; ``result`` is its :class:`~rota.engine.result.RunResult`, and the message
    names each failed task with its error."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result


class ArtifactError(RotaError):
    """Raised when a task output cannot be written or read back."""


class ExecutorError(RotaError):
    """Raised when an executor cannot start or lost its workers."""


class ResourceUnavailable(ExecutorError):
    """Reported when no worker of the cluster has the resources a task asks for
    (``resources={"GPU": 1}``): the attempt fails at submission instead of waiting forever."""


class TaskTimeout(RotaError):
    """Raised (or reported) when an attempt runs past its timeout; retried like any failure."""


class TemplateRenderError(RotaError):
    """Raised when a task's template cannot be rendered: an undefined name, an operation the
    sandbox blocks or an expression's error. The attempt fails; the message is one line."""


class WorkerLost(RotaError):
    """Reported when the worker process running an attempt died before reporting its outcome."""


class BranchError(RotaError):
    """Raised in a branch task whose function returned something other than ids of its direct
    downstream tasks (the message names the valid ids); the attempt fails."""


class Skip(Exception):
    """Raised by a task to skip itself; not a failure."""


class Reschedule(Exception):
    """Raised by a sensor in ``reschedule`` mode that is not satisfied yet: poke again at *at*
    (epoch seconds), releasing the worker meanwhile. Not a failure, and no try is used up."""

    def __init__(self, at: float) -> None:
        super().__init__(f"poke again at {at}")
        self.at = at


class SensorTimeout(RotaError):
    """Raised when a sensor was not satisfied within its timeout, counted from its first poke."""


class Retry(Exception):
    """Raised by a task to ask for another attempt; not a failure by itself."""
