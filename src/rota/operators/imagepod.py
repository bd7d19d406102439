"""Python tasks run in an image as a Kubernetes pod: ``@task(image=..., executor="kubernetes")``.

The same component model as :mod:`rota.operators.imagetask`, with a pod in place of a local
container: the worker ships the function with its arguments (cloudpickle) to a place both it
and the pod reach, the pod runs ``python3 -m rota.operators.inimage PLACE``, which writes back
the function's return value or error there, and the worker stores the output as for any task.
Everything else is a pod task's (:mod:`rota.operators.kubernetes`): the log, the timeout, the
deletion of the pod, the leftovers a killed runner leaves.

A pod cannot see a folder of the worker's machine. The place is:

- ``shared_dir`` when it is given: a folder the worker and the pod both see at that path (a
  volume of the pod mounted over it, e.g. an NFS claim the worker's machine mounts there too);
- else, when the artifact store is an object store (``s3://...``), a key under the run's folder
  there (the pod needs its own credentials to it, e.g. through its service account);
- else the attempt fails at once, saying so (the artifact store is a local folder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from rota.errors import DefinitionError
from rota.operators.base import ExecContext, RunReads, digest
from rota.operators.imagetask import dump_job, job_value
from rota.operators.inimage import JOB, RESULT

JOBS = ".rota-jobs"
"""The folder of a run's jobs in an object store artifact store."""
_OPTIONS = frozenset({"python", "shared_dir"})


class NoSharedPlace(Exception):
    """Raised when a Python task run as a pod has no place the worker and the pod both reach
    (the artifact store is a local folder and no ``shared_dir`` is given, or it is missing)."""


class _Place(Protocol):
    @property
    def location(self) -> str:
        """Where the pod finds the place (a folder's path or an object store URL)."""

    def write(self, name: str, data: bytes) -> None: ...

    def read(self, name: str) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class _Folder:
    location: str

    def write(self, name: str, data: bytes) -> None:
        (Path(self.location) / name).write_bytes(data)

    def read(self, name: str) -> bytes | None:
        path = Path(self.location) / name
        return path.read_bytes() if path.exists() else None


@dataclass(frozen=True, slots=True)
class _Objects:
    location: str
    fs: Any

    def write(self, name: str, data: bytes) -> None:
        self.fs.pipe_file(f"{self.location}/{name}", data)

    def read(self, name: str) -> bytes | None:
        path = f"{self.location}/{name}"
        return bytes(self.fs.cat_file(path)) if self.fs.exists(path) else None


@contextlib.contextmanager
def _shared_folder(task_id: str, shared_dir: str) -> Iterator[_Place]:
    try:
        folder = tempfile.mkdtemp(prefix="rota-job-", dir=shared_dir)
    except OSError as err:
        raise NoSharedPlace(
            f"task {task_id!r}: shared_dir {shared_dir} is not a folder this worker can write "
            f"({err.strerror})"
        ) from None
    try:
        yield _Folder(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _object_key(ctx: ExecContext) -> Iterator[_Place]:
    import fsspec

    from rota.artifacts.store import storage_options

    root = ctx.artifacts.rstrip("/")
    stem = ctx.task_id if ctx.map_index < 0 else f"{ctx.task_id}@{ctx.map_index}"
    url = f"{root}/{ctx.run_id}/{JOBS}/{stem}.{ctx.try_number}.{secrets.token_hex(8)}"
    fs, path = fsspec.core.url_to_fs(url, **storage_options(url))
    try:
        yield _Objects(fs.unstrip_protocol(path), fs)
    finally:
        with contextlib.suppress(Exception):
            fs.rm(path, recursive=True)


def job_place(
    ctx: ExecContext, shared_dir: str | None
) -> contextlib.AbstractContextManager[_Place]:
    """Where this attempt's job and result go (see the module's docstring); removed afterwards.

    Raises:
        NoSharedPlace: the artifact store is a local folder and no *shared_dir* is given.
    """
    if shared_dir is not None:
        return _shared_folder(ctx.task_id, shared_dir)
    root = ctx.artifacts
    if "://" in root and not root.startswith("file://"):
        return _object_key(ctx)
    raise NoSharedPlace(
        f"task {ctx.task_id!r}: a pod cannot read this machine's artifact folder "
        f"{root.removeprefix('file://') or '(none)'}: give container={{'shared_dir': ..., "
        "'volumes': [...]}} (a folder the worker and the pod both see at that path) or use an "
        "object store for the artifacts (--artifacts s3://...)"
    )


@dataclass(frozen=True, slots=True, eq=False)
class ImagePodOp:
    """Runs *inner* (a Python task's operator) in a pod made by *pod* (its argv is set per
    attempt: ``python -m rota.operators.inimage PLACE``)."""

    inner: Any
    pod: Any
    """The ``KubernetesPodOp`` of the pod (its command is replaced by the job's)."""
    python: str = "python3"
    shared_dir: str | None = None
    kind: str = "image-pod"

    def describe(self) -> str:
        return f"{self.inner.describe()} in a pod of {self.pod.shape.image}"

    def code_hash(self) -> str:
        return digest(self.inner.code_hash(), self.pod.code_hash(), self.python)

    def run_reads(self, ctx: ExecContext) -> RunReads:
        reads: RunReads = self.inner.run_reads(ctx)
        return reads

    def leftovers_scope(self) -> str:
        return str(self.pod.leftovers_scope())

    def remove_leftovers(self, run_id: str) -> list[str]:
        """Delete the pods of run *run_id* (see ``KubernetesPodOp.remove_leftovers``)."""
        return list(self.pod.remove_leftovers(run_id))

    def execute(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Call the function in a pod; its return value.

        Raises:
            NoSharedPlace: no place both the worker and the pod reach (see the module).
            ImageTaskFailed: the function raised (its traceback is in the log), or wrote no result.
            PodFailed: the pod ended Failed (e.g. no Python or no ``rota`` in the image).
            TaskTimeout: the deadline passed (the pod is deleted).
        """
        job = dump_job(self.inner, ctx, args, kwargs)
        with job_place(ctx, self.shared_dir) as place:
            place.write(JOB, job)
            argv = (self.python, "-m", "rota.operators.inimage", place.location)
            dataclasses.replace(self.pod, argv=argv).execute(ctx, (), {})
            return job_value(place.read(RESULT))


def _check_shared_dir(task_id: str, shared_dir: object, volumes: tuple[Any, ...]) -> str | None:
    """*shared_dir* when it is absolute and inside one of the pod's *volumes*.

    Raises:
        DefinitionError: it is not, so the pod could not see it.
    """
    if shared_dir is None:
        return None
    where = f"task {task_id!r}"
    if not isinstance(shared_dir, str) or not shared_dir.startswith("/"):
        raise DefinitionError(f"{where}: shared_dir must be an absolute path, got {shared_dir!r}")
    inside = PurePosixPath(shared_dir)
    mounts = [PurePosixPath(v.mount_path) for v in volumes if not v.read_only]
    if not any(inside == m or m in inside.parents for m in mounts):
        raise DefinitionError(
            f"{where}: shared_dir {shared_dir} is not inside a writable volume of the pod "
            "(give volumes=[PodVolume(..., mount_path=...)] that holds it)"
        )
    return shared_dir


def image_pod_op(
    task_id: str, inner: Any, image: str, options: Mapping[str, Any] | None
) -> ImagePodOp:
    """The operator of a Python task run as a pod of *image*, with pod *options* (those of
    ``KubernetesPodTask``, and ``python`` and ``shared_dir``).

    Raises:
        DefinitionError: an unknown or bad option.
    """
    from rota.operators.kubernetes import POD_OPTIONS, pod_op

    opts = dict(options or {})
    known = POD_OPTIONS | _OPTIONS
    unknown = sorted(set(opts) - known)
    if unknown:
        raise DefinitionError(
            f"task {task_id!r}: unknown pod option {unknown[0]!r} ({', '.join(sorted(known))})"
        )
    python = opts.pop("python", "python3")
    if not isinstance(python, str) or not python.strip():
        raise DefinitionError(f"task {task_id!r}: python must name the image's Python")
    shared = opts.pop("shared_dir", None)
    pod = pod_op(task_id, image, [python, "-m", "rota.operators.inimage"], **opts)
    return ImagePodOp(inner, pod, python, _check_shared_dir(task_id, shared, pod.shape.volumes))
