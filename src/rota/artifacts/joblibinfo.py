"""What a joblib file holds, read without loading it: joblib's layout over :mod:`pickleinfo`.

``joblib.dump`` writes a pickle in which each numpy array is replaced by a ``NumpyArrayWrapper``
(its class, shape, order and dtype) and the array's bytes follow that wrapper's BUILD opcode raw:
a padding-length byte and padding (joblib >= 1.2 aligns arrays to 16 bytes), then the data, or a
nested pickle of its own for an array of Python objects. The whole file may be compressed (zlib,
gzip, bz2, xz, lzma, lz4), recognised by its first bytes as joblib does. The reader passes over
each array's bytes as joblib would read them, so the opcodes after it are read as opcodes.
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from typing import Any, BinaryIO, Final, cast

from rota.artifacts.picklebytes import SKIP_CHUNK, NotAPickle, Source, StopReading
from rota.artifacts.pickleinfo import PickleInfo, analyse, first
from rota.artifacts.picklevm import Box, Machine, Made, Ref

_WRAPPER: Final = "joblib.numpy_pickle.NumpyArrayWrapper"
_HASOBJECT: Final = 0x01  # NPY_ITEM_HASOBJECT in a pickled dtype's flags


def _ints(box: Any) -> list[int] | None:
    if not isinstance(box, Box) or box.count != len(box.items):
        return None
    values = box.items
    return values if all(type(v) is int and v >= 0 for v in values) else None


def _dtype_layout(dtype: Any) -> tuple[int, bool] | None:
    """(item size, holds objects) of a pickled ``numpy.dtype``, read from its literals."""
    if not (isinstance(dtype, Made) and isinstance(dtype.callee, Ref)):
        return None
    code, state = first(dtype.args), dtype.state
    if dtype.callee.name != "numpy.dtype" or not isinstance(code, str):
        return None
    if not isinstance(state, Box) or len(state.items) < 8:
        return None
    elsize, flags = state.items[5], state.items[7]
    if type(elsize) is not int or type(flags) is not int:
        return None
    digits = code.lstrip("<>|=").lstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ?")
    if elsize <= 0:
        if not digits.isdigit():
            return None
        elsize = int(digits)
    return elsize, bool(flags & _HASOBJECT)


def _skip_array(machine: Machine) -> None:
    """After a NumpyArrayWrapper's BUILD: pass over the array it stands for, as joblib reads it."""
    wrapper = machine.top()
    if not (isinstance(wrapper, Made) and isinstance(wrapper.callee, Ref)):
        return
    if wrapper.callee.name != _WRAPPER or not isinstance(wrapper.state, Box):
        return
    state = wrapper.state
    shape, layout = _ints(state.get("shape")), _dtype_layout(state.get("dtype"))
    if shape is None or layout is None:
        raise StopReading("an array whose layout is not understood")
    itemsize, objects = layout
    if objects:  # joblib writes an object array as a nested pickle of its own
        inner = Machine(machine.src)
        inner.run()
        machine.imports.update(inner.imports)
        machine.opcodes += inner.opcodes
    else:
        if type(state.get("numpy_array_alignment_bytes")) is int:
            machine.src.skip(machine.src.read(1)[0])  # the padding length byte, then padding
        count = 1
        for dim in shape:
            count *= dim
        machine.src.skip(count * itemsize)
    machine.pop()  # only now: a reader stopped inside the array still names the wrapper
    machine.push(Made(machine.ref("numpy.ndarray"), Box("tuple", list(shape), len(shape)), "new"))


# joblib's compressors, by the magic bytes their files start with.
_COMPRESSED: Final = (
    (b"\x1f\x8b", "gzip"),
    (b"\x78", "zlib"),
    (b"BZ", "bz2"),
    (b"\xfd7zXZ", "xz"),
    (b"\x5d\x00", "lzma"),
    (b'\x04"M\x18', "lz4"),
    (b"ZF", "zlib (joblib < 0.10)"),
)


def compression_of(head: bytes) -> str | None:
    """The compressor a joblib file that starts with *head* was written with, or None."""
    return next((name for magic, name in _COMPRESSED if head.startswith(magic)), None)


class _Inflate(io.RawIOBase):
    """A zlib or gzip stream, decompressed as it is read."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self._z = zlib.decompressobj(32 + 15)  # either header

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._z.eof:
            data = self._z.unconsumed_tail or self._raw.read(SKIP_CHUNK)
            if not data:
                raise NotAPickle("truncated: the compressed stream ends early")
            out = self._z.decompress(data, len(view))
            if out:
                view[: len(out)] = out
                return len(out)
        return 0


def _decompressed(stream: BinaryIO, kind: str) -> io.BufferedIOBase:
    if kind in ("gzip", "zlib"):
        return io.BufferedReader(_Inflate(stream))
    if kind == "bz2":
        return bz2.BZ2File(stream)
    if kind in ("xz", "lzma"):
        return lzma.LZMAFile(stream)
    raise NotAPickle(f"a {kind}-compressed joblib file: not read")


def read_joblib(stream: BinaryIO) -> tuple[PickleInfo, str | None]:
    """What the joblib file in *stream* (seekable, at its start) holds, and its compression.

    Raises:
        NotAPickle: the bytes are not a joblib file (or use a compression not read here).
    """
    head = stream.read(8)
    stream.seek(0)
    kind = compression_of(head)
    if kind is None:
        return analyse(Machine(Source(stream, seekable=True), after_build=_skip_array)), None
    try:
        with _decompressed(stream, kind) as plain:
            src = Source(cast(BinaryIO, plain), seekable=False)
            return analyse(Machine(src, after_build=_skip_array)), kind
    except NotAPickle:
        raise
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as err:
        raise NotAPickle(f"the {kind} stream is corrupt: {err}") from None
