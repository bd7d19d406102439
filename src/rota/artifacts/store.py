"""Task outputs on any fsspec filesystem: a local folder by default, ``s3://bucket/prefix`` too.

Where an output lives is a pure function of (run, task, map index) and the serializer's extension,
never of the attempt or the clock, so a re-run overwrites it. A write is atomic: a reader sees the
old object, the new one, or none, never part of one (DESIGN.md, invariant 2):

* a local folder: a temporary file beside the final one, flushed, fsynced, then ``os.replace``;
* an object store (S3, GCS, Azure): the value is serialized to a local staging file first, then
  uploaded to the final key in one request. One PUT is atomic, and a multipart upload becomes
  visible only when it completes (s3fs aborts it on failure). This costs local disk for the
  staging file but saves the server-side copy that "temporary key, then move" would cost;
* any other filesystem (memory, SFTP, ...): the staging file is uploaded to a hidden temporary
  key beside the final one, then moved onto it with ``fs.mv``.

The store records nothing itself: :meth:`ArtifactStore.put` returns a :class:`StoredOutput`
(URI, serializer, size, BLAKE2b hash of the bytes) for the metadata store to keep. The bytes of
a stored object never pass through the database; a small output asked to be kept inline
(``inline_limit``) comes back in :attr:`StoredOutput.inline` instead, for the metadata store to
keep in the attempt's row. Reads are streamed from ``fs.open``, never read whole.

A root that is an absolute path of this machine is read and written with the ``os`` module
directly; fsspec is imported only for a URL, or when a caller asks for :attr:`ArtifactStore.fs`
(``import fsspec`` costs a one-task ``rota run`` about 40 ms).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, TypeVar, cast

from rota.artifacts import peek, serializers
from rota.artifacts.inline import SpillWriter, inline_uri, is_inline
from rota.artifacts.preview import preview as _preview
from rota.errors import ArtifactError
from rota.home import private_dir

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

# Protocols whose single upload of a whole file is atomic at the final key.
ATOMIC_UPLOAD_PROTOCOLS: Final = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
ENDPOINT_VARIABLE: Final = "ROTA_S3_ENDPOINT_URL"
_CHUNK: Final = 1024 * 1024
_SPOOL_IN_MEMORY: Final = 32 * 1024 * 1024
# Run and task ids become path segments: no separators, no leading dot, nothing that escapes.
_SEGMENT: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+=-]*$")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """What the metadata store keeps about one stored output; the bytes stay in the store."""

    uri: str
    serializer: str
    size: int
    content_hash: str  # BLAKE2b (64-byte digest) of the stored bytes, in hex
    inline: bytes | None = None
    """The bytes themselves, when they are small enough to be kept in the attempt's row instead
    of a file (see :mod:`rota.artifacts.inline`); ``uri`` is then an ``inline:`` name."""


class _DumpFailed(Exception):
    """Raised inside this module when a serializer (not the storage) fails to write a value."""


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts the bytes it passes on to *target*."""

    def __init__(self, target: BinaryIO) -> None:
        super().__init__()
        self._target = target
        self.hash = hashlib.blake2b()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        view = memoryview(data).cast("B")
        self.hash.update(view)
        self._target.write(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._target.flush()


def _dump(ser: serializers.Serializer, value: Any, target: BinaryIO) -> tuple[int, str]:
    """Serialize *value* into *target*; return (size, hash). Storage errors pass through."""
    writer = _HashingWriter(target)
    try:
        ser.dump(value, cast(BinaryIO, writer))
    except OSError:
        raise
    except Exception as err:
        raise _DumpFailed(_one_line(err)) from err
    return writer.size, writer.hash.hexdigest()


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class ArtifactStore:
    """Task outputs under one root: a local path or any fsspec URL (``s3://bucket/prefix``)."""

    def __init__(self, root: str, storage_options: Mapping[str, Any] | None = None) -> None:
        """Open the store at *root*; *storage_options* go to the fsspec filesystem (s3fs, ...).

        fsspec keeps one filesystem instance per (class, options), so opening many stores, or
        reading many outputs, on the same root costs one client.
        """
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        self._root_arg = root
        self._fs: Any = None
        path = _plain_path(root)
        self._local = path is not None
        if path is None:
            import fsspec.core
            from fsspec.implementations.local import LocalFileSystem

            self._fs, path = fsspec.core.url_to_fs(root, **self.storage_options)
            self._local = isinstance(self._fs, LocalFileSystem)
            path = path.rstrip("/") or path
        self._root_path: str = path
        self.root: str = path if self._local else self._fs.unstrip_protocol(path)
        protocols = self._fs.protocol if self._fs is not None else ("file",)
        protocols = (protocols,) if isinstance(protocols, str) else tuple(protocols)
        self._atomic_upload = not ATOMIC_UPLOAD_PROTOCOLS.isdisjoint(protocols)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    @property
    def fs(self) -> Any:
        """The fsspec filesystem of the root (for a local root, made at the first ask)."""
        if self._fs is None:
            import fsspec.core

            self._fs = fsspec.core.url_to_fs(self._root_arg, **self.storage_options)[0]
        return self._fs

    @property
    def fs_is_local(self) -> bool:
        """Whether the root is a folder of this machine's filesystem (maybe a shared mount)."""
        return self._local

    # --- where ------------------------------------------------------------------------------

    def uri_for(self, run_id: str, task_id: str, map_index: int, ext: str) -> str:
        """The URI of the output of (*run_id*, *task_id*, *map_index*) stored with extension *ext*.

        A pure function: the same arguments always give the same URI (``<root>/<run>/<task>.json``,
        or ``<root>/<run>/<task>@<index>.npy`` for a mapped instance; *map_index* < 0 means none).

        Raises:
            ArtifactError: *run_id* or *task_id* cannot be a path segment.
        """
        for what, segment in (("run id", run_id), ("task id", task_id)):
            if not _SEGMENT.match(segment):
                raise ArtifactError(f"{what} {segment!r} cannot name an artifact")
        name = task_id if map_index < 0 else f"{task_id}@{map_index}"
        return f"{self.root}/{run_id}/{name}{ext}"

    def _path(self, uri: str) -> tuple[Any, str]:
        """The filesystem and path of *uri*: this store's own, or one opened for another root;
        None for the filesystem when *uri* is a path of this machine (read it with ``os``)."""
        if uri == self.root or uri.startswith(self.root + "/"):
            path = self._root_path + uri[len(self.root) :]
            return (None if self._local else self._fs), path
        plain = _plain_path(uri)
        if plain is not None:
            return None, plain
        import fsspec.core
        from fsspec.implementations.local import LocalFileSystem

        fs, path = fsspec.core.url_to_fs(uri)
        return (None if isinstance(fs, LocalFileSystem) else fs), str(path)

    # --- write ------------------------------------------------------------------------------

    def put(
        self,
        run_id: str,
        task_id: str,
        map_index: int,
        value: Any,
        serializer: str | None = None,
        *,
        inline_limit: int = 0,
    ) -> StoredOutput:
        """Store *value* as the output of (*run_id*, *task_id*, *map_index*), atomically.

        The serializer is the one named, or the one chosen by type; if a chosen one (not a named
        one) fails on the value, pickle is tried instead. A second put overwrites the first.
        When the serialized bytes are at most *inline_limit*, nothing is written: they come back
        in :attr:`StoredOutput.inline`, for the metadata store to keep with the attempt.

        Raises:
            DefinitionError: *serializer* names no serializer.
            ArtifactError: the value cannot be serialized, or the store cannot be written.
        """
        chosen = serializers.choose(value, serializer)
        try:
            return self._put_with(chosen, (run_id, task_id, map_index), value, inline_limit)
        except _DumpFailed as err:
            if serializer is not None or chosen.name == serializers.FALLBACK:
                raise ArtifactError(
                    f"cannot serialize the output of task {task_id!r} with {chosen.name}: {err}"
                ) from err.__cause__
        # e.g. a DataFrame with a column of mixed Python objects that Parquet cannot type
        fallback = serializers.get(serializers.FALLBACK)
        try:
            return self._put_with(fallback, (run_id, task_id, map_index), value, inline_limit)
        except _DumpFailed as err:
            raise ArtifactError(
                f"cannot serialize the output of task {task_id!r} with {fallback.name}: {err}"
            ) from err.__cause__

    def _put_with(
        self,
        ser: serializers.Serializer,
        where: tuple[str, str, int],
        value: Any,
        inline_limit: int,
    ) -> StoredOutput:
        run_id, task_id, map_index = where
        uri = self.uri_for(run_id, task_id, map_index, ser.extension)
        _, path = self._path(uri)
        try:
            if self._local:
                size, digest, held = self._write_local(path, ser, value, inline_limit)
            else:
                size, digest, held = self._write_remote(path, ser, value, inline_limit)
        except _DumpFailed:
            raise
        except Exception as err:
            raise ArtifactError(
                f"cannot write the output of task {task_id!r} to {uri}: {_one_line(err)}"
            ) from err
        if held is not None:
            uri = inline_uri(run_id, task_id, map_index)
        return StoredOutput(
            uri=uri, serializer=ser.name, size=size, content_hash=digest, inline=held
        )

    def _write_local(
        self, path: str, ser: serializers.Serializer, value: Any, limit: int
    ) -> tuple[int, str, bytes | None]:
        """Serialize *value* to *path* (a temporary file, fsync, rename), or into memory when it
        fits in *limit* bytes: then (size, hash, the bytes) and no file is touched."""
        folder, name = os.path.split(path)
        temps: list[str] = []

        def open_temp() -> BinaryIO:
            private_dir(Path(folder))
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
            temps.append(tmp)
            return os.fdopen(fd, "wb")

        spill = SpillWriter(limit, open_temp)
        try:
            if limit <= 0:
                spill.spill()
            size, digest = _dump(ser, value, cast(BinaryIO, spill))
            if spill.spilled is None:
                return size, digest, spill.held()
            with spill.spilled as fh:
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temps[0], path)
        except BaseException:
            if spill.spilled is not None:
                spill.spilled.close()
            for tmp in temps:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            raise
        return size, digest, None

    def _write_remote(
        self, path: str, ser: serializers.Serializer, value: Any, limit: int
    ) -> tuple[int, str, bytes | None]:
        """Serialize *value* into a local staging file and upload it, or into memory when it
        fits in *limit* bytes: then (size, hash, the bytes) and nothing is uploaded."""
        temps: list[str] = []

        def open_staging() -> BinaryIO:
            fd, staging = tempfile.mkstemp(prefix="rota-artifact-", suffix=ser.extension)
            temps.append(staging)
            return os.fdopen(fd, "wb")

        spill = SpillWriter(limit, open_staging)
        try:
            if limit <= 0:
                spill.spill()
            size, digest = _dump(ser, value, cast(BinaryIO, spill))
            if spill.spilled is None:
                return size, digest, spill.held()
            spill.spilled.close()
            if self._atomic_upload:
                self.fs.put_file(temps[0], path)
            else:
                self._upload_then_move(temps[0], path)
        finally:
            if spill.spilled is not None:
                spill.spilled.close()
            for staging in temps:
                os.unlink(staging)
        return size, digest, None

    def _upload_then_move(self, staging: str, path: str) -> None:
        parent, name = path.rsplit("/", 1) if "/" in path else ("", path)
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            self.fs.put_file(staging, tmp)
            self.fs.mv(tmp, path)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise

    # --- read -------------------------------------------------------------------------------

    def get(
        self,
        uri: str,
        serializer: str,
        *,
        producer: str,
        content_hash: str | None = None,
        inline: bytes | None = None,
    ) -> Any:
        """Load the output at *uri*, stored with *serializer* by task *producer*; streamed.

        An ``inline:`` output is loaded from *inline*, the bytes its attempt's row keeps.

        With *content_hash*, the bytes are hashed as they stream and must match it. A pickle or
        joblib output is unpickled, which runs whatever code it names: to look at an output
        without loading it, use :meth:`peek`.

        Raises:
            ArtifactError: the object is missing, unreadable, or its bytes do not match
                *content_hash* (truncated or corrupted); the one-line message names *uri* and
                *producer*.
            DefinitionError: *serializer* names no serializer.
        """
        return self._read(uri, producer, content_hash, serializers.get(serializer).load, inline)

    def peek(
        self,
        uri: str,
        serializer: str,
        *,
        producer: str,
        content_hash: str | None = None,
        inline: bytes | None = None,
    ) -> peek.Description:
        """A preview of the output at *uri* read by safe readers only: nothing is unpickled.

        JSON, npy and Parquet outputs are previewed; a pickle or joblib output is described by
        its type name and imports, read from its opcodes (see :mod:`rota.artifacts.peek`). The
        bytes are checked against *content_hash* first, as by :meth:`get`.

        Raises:
            ArtifactError: the object is missing, unreadable, does not match *content_hash*, or
                does not parse as the format *serializer* names; the message names *uri*.
        """
        return self._read(
            uri, producer, content_hash, lambda s: peek.describe(s, serializer), inline
        )

    def _read(
        self,
        uri: str,
        producer: str,
        content_hash: str | None,
        reader: Callable[[BinaryIO], _T],
        inline: bytes | None = None,
    ) -> _T:
        """Open *uri*, check its bytes against *content_hash*, and give the stream to *reader*."""
        fh, local = self._open(uri, producer, inline)
        return _read_from(fh, local, uri, producer, content_hash, reader)

    def _open(self, uri: str, producer: str, inline: bytes | None) -> tuple[BinaryIO, bool]:
        """The stream of *uri*'s bytes, and whether it can be read twice (a local file)."""
        if is_inline(uri):
            if inline is None:
                raise ArtifactError(
                    f"output of task {producer!r} is missing: {uri} (its bytes are not recorded)"
                )
            return io.BytesIO(inline), True
        fs, path = self._path(uri)
        local = fs is None
        try:  # a local file is opened directly: numpy and pyarrow read real files faster
            fh = open(path, "rb") if local else fs.open(path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise ArtifactError(f"output of task {producer!r} is missing: {uri}") from None
        except Exception as err:
            raise ArtifactError(
                f"output of task {producer!r} at {uri} is unreadable: {_one_line(err)}"
            ) from err
        return cast(BinaryIO, fh), local

    def exists(self, uri: str) -> bool:
        """Whether an object is stored at *uri* (an ``inline:`` output is not: its attempt's row
        holds it)."""
        if is_inline(uri):
            return False
        fs, path = self._path(uri)
        return os.path.exists(path) if fs is None else bool(fs.exists(path))

    def delete_run(self, run_id: str) -> None:
        """Delete every output of *run_id*; nothing happens if it has none."""
        folder = self.uri_for(run_id, "_", -1, "").rsplit("/", 1)[0]
        fs, path = self._path(folder)
        if fs is None:
            if os.path.lexists(path):
                shutil.rmtree(path)
        elif fs.exists(path):
            fs.rm(path, recursive=True)

    @staticmethod
    def preview(value: Any) -> str:
        """A short human preview of *value*; see :func:`rota.artifacts.preview.preview`."""
        return _preview(value)


def _read_from(
    fh: BinaryIO,
    local: bool,
    uri: str,
    producer: str,
    content_hash: str | None,
    reader: Callable[[BinaryIO], _T],
) -> _T:
    """Check *fh*'s bytes against *content_hash* and give the stream to *reader*; closes *fh*."""
    with fh:
        try:
            verified = fh if content_hash is None else _verified(fh, content_hash, local=local)
            with verified:
                return reader(verified)
        except _Mismatch as err:
            raise ArtifactError(f"output of task {producer!r} at {uri} is corrupt: {err}") from None
        except peek.PeekError as err:
            raise ArtifactError(
                f"output of task {producer!r} at {uri} cannot be previewed: {err}"
            ) from None
        except Exception as err:
            raise ArtifactError(
                f"output of task {producer!r} at {uri} is unreadable: {_one_line(err)}"
            ) from err


def _verified(fh: BinaryIO, expected: str, *, local: bool) -> BinaryIO:
    """A stream of *fh*'s bytes, checked against *expected* before anything is loaded.

    A local file is hashed, then rewound: the same open file, so a concurrent replace cannot
    slip in between. A remote object is copied into a local spool while it is hashed, so it
    is downloaded once and what is loaded is what was checked.
    """
    digest = hashlib.blake2b()
    # closed by get() with the stream it returns, or just below on a mismatch
    spool = None if local else tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY)  # noqa: SIM115
    while chunk := fh.read(_CHUNK):
        digest.update(chunk)
        if spool is not None:
            spool.write(chunk)
    target = fh if spool is None else cast(BinaryIO, spool)
    if digest.hexdigest() != expected:
        target.close()
        got = digest.hexdigest()
        raise _Mismatch(f"content hash {got[:16]}… is not the recorded {expected[:16]}…")
    target.seek(0)
    return target


def load_inline(
    uri: str, data: bytes, serializer: str, *, producer: str, content_hash: str | None
) -> Any:
    """Load the ``inline:`` output *uri* from *data*, the bytes its attempt's row keeps, checked
    against *content_hash* first (as :meth:`ArtifactStore.get` checks a stored object)."""
    reader = serializers.get(serializer).load
    return _read_from(io.BytesIO(data), True, uri, producer, content_hash, reader)


def peek_inline(
    uri: str, data: bytes, serializer: str, *, producer: str, content_hash: str | None
) -> peek.Description:
    """A safe preview of the ``inline:`` output *uri* from *data* (nothing is unpickled)."""
    return _read_from(
        io.BytesIO(data), True, uri, producer, content_hash, lambda s: peek.describe(s, serializer)
    )


def _plain_path(root: str) -> str | None:
    """*root* without a trailing slash if it is an absolute path of this machine (no protocol,
    no fsspec chain), as fsspec's local filesystem would name it; else None."""
    if os.sep != "/" or not root.startswith("/") or "::" in root:
        return None
    return root.rstrip("/") or "/"


class _Mismatch(Exception):
    """Raised inside this module when stored bytes do not hash to the recorded content hash."""


def open_artifact_store(
    url_or_path: str, environ: Mapping[str, str] | None = None
) -> ArtifactStore:
    """The artifact store at *url_or_path* (a folder, or an fsspec URL such as ``s3://b/p``).

    S3 credentials and region come from the standard AWS variables, which botocore reads itself;
    ``ROTA_S3_ENDPOINT_URL``, when set in *environ* (default: the process environment), points
    ``s3://`` URLs at another S3 API (MinIO, a test server).
    """
    return ArtifactStore(url_or_path, storage_options(url_or_path, environ))


def storage_options(url: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The fsspec options for *url*: ``endpoint_url`` from ``ROTA_S3_ENDPOINT_URL`` for S3.

    *environ* defaults to the process environment; other protocols get no options.
    """
    env = os.environ if environ is None else environ
    endpoint = env.get(ENDPOINT_VARIABLE)
    protocol = url.split("://", 1)[0] if "://" in url else None
    if endpoint and protocol in ("s3", "s3a"):
        return {"endpoint_url": endpoint}
    return {}


__all__ = [
    "ArtifactStore",
    "StoredOutput",
    "load_inline",
    "open_artifact_store",
    "peek_inline",
    "storage_options",
]
