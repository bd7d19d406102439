"""Previews of stored outputs, read from their bytes by readers that cannot run code.

:func:`describe` reads a stored output as the format its serializer name says it is in: JSON with
``json``; ``.npy`` with numpy's header reader and ``frombuffer`` (an array of Python objects is
not read: its items are pickles); Parquet with pyarrow; pickle and joblib files with
:mod:`~rota.artifacts.pickleinfo` and :mod:`~rota.artifacts.joblibinfo`, which read the opcodes
without executing them and give the type name and the globals the file would import, never the
value. The serializer name comes from the metadata store, which is no more trusted than the bytes:
bytes that do not parse as the format it names are an error, never a reason to try another reader.

Nothing on this path can unpickle: this module imports no unpickler (``pickle``, ``joblib``,
``cloudpickle``) and not :mod:`~rota.artifacts.serializers`, whose ``load`` methods would; a test
checks the imports. Loading a pickle on purpose is :meth:`ArtifactStore.get`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from rota.artifacts import joblibinfo, pickleinfo
from rota.artifacts.preview import array_summary, frame_summary, lines, preview, table_summary

MAX_JSON_BYTES: Final = 64 * 1024 * 1024
MAX_ARRAY_BYTES: Final = 64 * 1024 * 1024
_HEAD_ROWS: Final = 5


class PeekError(ValueError):
    """Raised when stored bytes do not parse as the format their serializer name says."""


@dataclass(frozen=True, slots=True)
class Description:
    """What :func:`describe` says about a stored output."""

    text: str
    """A few printable lines: the value's preview, or for a pickle what it is without loading."""
    pickled: bool = False
    """True for a pickle or joblib file: ``text`` describes it, the value was not loaded (only
    unpickling could show it)."""
    imports: tuple[str, ...] = ()
    """For a pickle: every global it would import."""


def _looks_like(head: bytes) -> str:
    if head[:1] == b"\x80":
        return " (its first bytes are a pickle's; it was not loaded)"
    return ""


def _head(stream: BinaryIO) -> bytes:
    start = stream.tell()
    head = stream.read(8)
    stream.seek(start)
    return head


def _json(stream: BinaryIO) -> Description:
    data = stream.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        start = data[:200].decode("utf-8", "replace")
        return Description(lines(f"JSON of more than 64 MiB, not previewed; it starts: {start}"))
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise PeekError(f"it is not UTF-8 text, so not JSON{_looks_like(data)}") from None
    except json.JSONDecodeError as err:
        raise PeekError(
            f"it does not parse as JSON: {err.msg} at line {err.lineno} column {err.colno}"
            f"{_looks_like(data)}"
        ) from None
    except (ValueError, RecursionError) as err:  # an int of 5,000 digits; nesting too deep
        raise PeekError(f"its JSON cannot be read back: {type(err).__name__}: {err}") from None
    if isinstance(value, str):  # text: shown as its lines, not as a quoted repr
        return Description(lines(f"str of {len(value)} characters:\n{value}"))
    return Description(preview(value))


def _npy_header(stream: BinaryIO) -> tuple[tuple[int, ...], bool, Any]:
    from numpy.lib import format as npy

    head = _head(stream)
    try:
        version = npy.read_magic(stream)
        if version == (1, 0):
            return npy.read_array_header_1_0(stream)
        if version == (2, 0):
            return npy.read_array_header_2_0(stream)
    except ValueError as err:
        raise PeekError(f"it does not parse as npy: {err}{_looks_like(head)}") from None
    raise PeekError(f"npy format {version[0]}.{version[1]} is not read here")


def _npy(stream: BinaryIO) -> Description:
    import math

    import numpy as np

    shape, fortran, dtype = _npy_header(stream)
    if dtype.hasobject:
        # np.save writes object arrays as pickles: not read, even with --unsafe-load
        return Description(
            lines(f"ndarray shape={shape} dtype={dtype}: object array: not previewed")
        )
    count = math.prod(shape)
    start = stream.tell()
    stored = stream.seek(0, 2) - start
    stream.seek(start)
    if stored != count * dtype.itemsize:
        raise PeekError(
            f"its npy header announces {count * dtype.itemsize} bytes of data, not {stored}"
        )
    if stored <= MAX_ARRAY_BYTES:
        array = np.frombuffer(stream.read(stored), dtype=dtype, count=count)
        array = array.reshape(shape, order="F" if fortran else "C")
        return Description(preview(array))
    # a big array: its first values are its first bytes, unless it is stored column first
    first = (
        None
        if fortran and len(shape) > 1
        else np.frombuffer(stream.read(6 * dtype.itemsize), dtype)
    )
    return Description(lines(array_summary(shape, dtype, first, count)))


def _parquet(stream: BinaryIO) -> Description:
    import pyarrow as pa
    import pyarrow.parquet as pq

    head = _head(stream)
    try:
        pf = pq.ParquetFile(stream)
        schema = pf.schema_arrow
        batch = next(pf.iter_batches(batch_size=_HEAD_ROWS), None)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise PeekError(f"it does not parse as Parquet: {err}{_looks_like(head)}") from None
    rows = pf.metadata.num_rows
    if (schema.metadata or {}).get(b"rota.kind") == b"pandas":
        table = pa.Table.from_batches([batch]) if batch is not None else schema.empty_table()
        try:  # pandas' own metadata (index, dtypes) is JSON: read as data
            return Description(lines(frame_summary(rows, table.to_pandas())))
        except Exception:  # metadata pandas cannot apply: the table is still shown
            pass
    return Description(lines(table_summary(rows, schema)))


def _opaque(info: pickleinfo.PickleInfo, how: str) -> Description:
    what = f"made by calling {info.type_name}" if info.made_by_call else f"type {info.type_name}"
    out = [f"{what} ({how})"]
    if info.imports:
        out.append(f"imports: {pickleinfo.names(info.imports)}")
    if not info.complete:
        out.append(f"read in part: {info.note}")
    return Description(lines("\n".join(out)), pickled=True, imports=info.imports)


def _pickle(stream: BinaryIO) -> Description:
    try:
        info = pickleinfo.read_pickle(stream)
        return _opaque(info, f"pickle protocol {info.protocol}")
    except pickleinfo.NotAPickle as err:
        raise PeekError(f"it does not parse as a pickle: {err}") from None


def _joblib(stream: BinaryIO) -> Description:
    try:
        info, compression = joblibinfo.read_joblib(stream)
    except pickleinfo.NotAPickle as err:
        raise PeekError(f"it does not parse as a joblib file: {err}") from None
    how = f"joblib, pickle protocol {info.protocol}"
    return _opaque(info, f"{how}, {compression}-compressed" if compression else how)


_READERS: Final[dict[str, Callable[[BinaryIO], Description]]] = {
    "json": _json,
    "npy": _npy,
    "parquet": _parquet,
    "pickle": _pickle,
    "joblib": _joblib,
}


def describe(stream: BinaryIO, serializer: str) -> Description:
    """Preview the output in *stream* (seekable, at its start), stored by *serializer*.

    Raises:
        PeekError: *serializer* is unknown, or the bytes do not parse as its format.
    """
    reader = _READERS.get(serializer)
    if reader is None:
        raise PeekError(f"its serializer {serializer!r} is unknown, so it is not read")
    return reader(stream)
