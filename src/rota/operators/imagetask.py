"""Python tasks run in an image: ``@task(image="localhost/ml-env:1")`` (Kubeflow's component model).

The worker loads the task's inputs as for any task, ships the function with its arguments to a
fresh container of the image (cloudpickle, in a private folder mounted at :data:`JOB_DIR`),
where ``python3 -m rota.operators.inimage`` calls it and writes back its return value or its
error; the worker then stores the output in the artifact store as for any task. The image needs
Python, ``rota`` (with cloudpickle) and what the function imports. Everything else is a
container task's: the log, the timeout, the removal of the container, the runtime's choice.
"""

from __future__ import annotations

import dataclasses
import pickle
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rota.errors import DefinitionError
from rota.model.secrets import Masker, Secret
from rota.operators.base import ExecContext, NoCheckpoint, RunReads, digest
from rota.operators.container import ContainerOp, Mount
from rota.operators.containertask import check_options
from rota.operators.inimage import JOB, RESULT

JOB_DIR = "/rota/job"
"""Where the job's folder is mounted in the container."""
_OPTIONS = frozenset({"mounts", "env", "workdir", "resources", "network", "runtime", "python"})


class ImageTaskFailed(Exception):
    """Raised when a Python task run in an image raised (its type and message are given)."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        super().__init__(f"{type_name}: {message}" if message else type_name)


@dataclass(frozen=True, slots=True, eq=False)
class ImageOp:
    """Runs *inner* (a Python task's operator) in a container made by *container*."""

    inner: Any
    container: ContainerOp
    kind: str = "image"

    def describe(self) -> str:
        return f"{self.inner.describe()} in {self.container.image}"

    def code_hash(self) -> str:
        return digest(self.inner.code_hash(), self.container.code_hash())

    def run_reads(self, ctx: ExecContext) -> RunReads:
        reads: RunReads = self.inner.run_reads(ctx)
        return reads

    def leftovers_scope(self) -> str:
        return str(self.container.leftovers_scope())

    def remove_leftovers(self, run_id: str) -> list[str]:
        """Remove the containers of run *run_id* (see ``ContainerOp.remove_leftovers``)."""
        return list(self.container.remove_leftovers(run_id))

    def execute(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Call the function in a container; its return value.

        Raises:
            ImageTaskFailed: the function raised (its traceback is in the log), or wrote no result.
            ContainerFailed: the container exited with a non-zero code (e.g. no Python in it).
            TaskTimeout: the deadline passed (the container is removed).
        """
        with tempfile.TemporaryDirectory(prefix="rota-image-") as job:
            folder = Path(job)
            (folder / JOB).write_bytes(dump_job(self.inner, ctx, args, kwargs))
            mount = Mount(job, JOB_DIR)
            op = dataclasses.replace(self.container, mounts=(mount, *self.container.mounts))
            op.execute(ctx, (), {})
            result = folder / RESULT
            return job_value(result.read_bytes() if result.exists() else None)


def dump_job(
    inner: Any, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> bytes:
    """The job a container or a pod runs: the function of Python task operator *inner* and its
    arguments, cloudpickled (with the attempt's context when the function takes ``ctx``)."""
    if inner.takes_ctx:  # what only the worker has stays behind: its checkpoint store, its
        # clock's deadline, the secrets it masks (its log masks them still)
        shipped = dataclasses.replace(
            ctx, checkpoint=NoCheckpoint(), deadline=None, masker=Masker(), store=None
        )
        kwargs = {**kwargs, "ctx": shipped}
    return _dumps((inner.fn, args, dict(kwargs)))


def job_value(result: bytes | None) -> Any:
    """The function's return value from the *result* its job wrote.

    Raises:
        ImageTaskFailed: the function raised, or no result was written.
    """
    if result is None:
        raise ImageTaskFailed("NoResult", "the container wrote no result")
    outcome = pickle.loads(result)  # the task's own output, written by its own code
    if outcome[0] == "ok":
        return outcome[1]
    raise ImageTaskFailed(outcome[1], outcome[2])


def _dumps(job: tuple[Any, ...]) -> bytes:
    """cloudpickle *job*, the function's own module by value (the image does not have it)."""
    import cloudpickle

    module = sys.modules.get(getattr(job[0], "__module__", "") or "")
    by_value = module is not None and not module.__name__.startswith("rota")
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        return bytes(cloudpickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)


EXECUTORS = ("container", "kubernetes")
"""Where ``@task(image=..., executor=...)`` runs the function: a local container (podman or
docker, the default) or a Kubernetes pod."""


def image_op(
    task_id: str,
    inner: Any,
    image: str,
    options: Mapping[str, Any] | None,
    executor: str | None = None,
) -> Any:
    """The operator of a Python task run in *image*: in a local container with container
    *options* (``mounts``, ``env``, ``workdir``, ``resources``, ``network``, ``runtime``,
    ``python``), or with *executor* ``"kubernetes"`` in a pod (``rota.operators.imagepod``).

    Raises:
        DefinitionError: an unknown executor, an unknown or bad option, or a ``rota.Secret`` in
            ``env`` (not carried into an image task yet).
    """
    if executor not in (None, *EXECUTORS):
        raise DefinitionError(
            f"task {task_id!r}: executor must be one of {', '.join(EXECUTORS)}, got {executor!r}"
        )
    if executor == "kubernetes":
        from rota.operators.imagepod import image_pod_op

        return image_pod_op(task_id, inner, image, options)
    opts = dict(options or {})
    unknown = sorted(set(opts) - _OPTIONS)
    if unknown:
        known = ", ".join(sorted(_OPTIONS))
        raise DefinitionError(
            f"task {task_id!r}: unknown container option {unknown[0]!r} ({known})"
        )
    if any(isinstance(v, Secret) for v in dict(opts.get("env") or {}).values()):
        raise DefinitionError(f"task {task_id!r}: a rota.Secret cannot go into an image task's env")
    python = str(opts.pop("python", "python3"))
    command = (python, "-m", "rota.operators.inimage", JOB_DIR)
    container = check_options(task_id, image, command, **opts)
    return ImageOp(inner, container)
