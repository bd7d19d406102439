"""The bytes of a pickle, read exactly and within budgets, and its opcodes' arguments decoded.

:class:`Source` reads a stream through a buffer; long strings and bytes are passed over (a seek
where the stream allows) and stand as a :class:`Blob`, so a stream announcing a value of an
exabyte costs nothing but a refusal. Arguments are decoded as :mod:`pickletools` decodes them;
pickletools is used for its opcode table and protocol-0 decoders, never to load anything.
"""

from __future__ import annotations

import io
import pickletools
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

KEEP_BYTES: Final = 4096
"""Strings and bytes up to this long are kept (module and class names are short); longer ones
are skipped and stand as a :class:`Blob`."""
MAX_SCAN_BYTES: Final = 512 * 1024 * 1024
"""At most this much of a stream that cannot seek (a decompressed one) is read."""
_LINE_LIMIT: Final = 64 * 1024
_CHUNK: Final = 64 * 1024
SKIP_CHUNK: Final = 1024 * 1024


class NotAPickle(ValueError):
    """Raised when a stream is not a pickle that could load: bad opcode, truncated, malformed."""


class StopReading(Exception):
    """Raised inside the readers when they stop early (a budget, a layout they cannot read)."""


@dataclass(frozen=True, slots=True)
class Blob:
    """A value too long to keep: its kind (``str``, ``bytes``, ``int``...) and size in bytes."""

    kind: str
    size: int


class Source:
    """Reads a stream through a buffer: exact reads, skips, a position for messages, a budget.

    The stream's own position is always ``_base + len(_buf)``.
    """

    def __init__(self, stream: BinaryIO, *, seekable: bool) -> None:
        self._stream = stream
        self._buf = b""
        self._at = 0
        self._base = 0
        self._end: int | None = None
        self.scanned = 0
        if seekable:
            self._base = stream.tell()
            self._end = stream.seek(0, io.SEEK_END)
            stream.seek(self._base)

    @property
    def pos(self) -> int:
        """How far into the stream the reader is."""
        return self._base + self._at

    def read(self, n: int) -> bytes:
        """Exactly *n* bytes (n is small here), or NotAPickle."""
        at = self._at
        if at + n > len(self._buf):
            self._fill(n)
            at = 0
        self._at = at + n
        return self._buf[at : at + n]

    def _fill(self, n: int) -> None:
        """Make *n* bytes available from ``_at`` (which becomes 0)."""
        self._buf, self._base, self._at = self._buf[self._at :], self._base + self._at, 0
        while len(self._buf) < n:
            more = self._stream.read(max(n - len(self._buf), _CHUNK))
            if not more:
                end = self._base + len(self._buf)
                raise NotAPickle(f"truncated: the pickle ends at byte {end} before its STOP")
            self._count(len(more))
            self._buf += more

    def readline(self) -> bytes | None:
        """One line with its newline, or None for a line too long to keep (passed over)."""
        kept = True
        while True:
            newline = self._buf.find(b"\n", self._at, self._at + _LINE_LIMIT)
            if newline >= 0:
                line, self._at = self._buf[self._at : newline + 1], newline + 1
                return line if kept else None
            if len(self._buf) - self._at >= _LINE_LIMIT:
                self._at += _LINE_LIMIT
                kept = False
            else:
                self._fill(len(self._buf) - self._at + 1)

    def skip(self, n: int) -> None:
        """Pass over *n* bytes: a seek where the stream allows, else chunked reads."""
        held = len(self._buf) - self._at
        if n <= held:
            self._at += n
            return
        n -= held
        self._buf, self._base, self._at = b"", self._base + len(self._buf), 0
        if self._end is not None:
            if self._base + n > self._end:
                raise NotAPickle(f"truncated: {n} more bytes announced at byte {self._base}")
            self._base = self._stream.seek(self._base + n)
            return
        while n > 0:
            data = self._stream.read(min(n, SKIP_CHUNK))
            if not data:
                raise NotAPickle(f"truncated: the pickle ends at byte {self._base} before its STOP")
            self._count(len(data))
            self._base += len(data)
            n -= len(data)

    def _count(self, n: int) -> None:
        self.scanned += n
        if self._end is None and self.scanned > MAX_SCAN_BYTES:
            raise StopReading(f"read {MAX_SCAN_BYTES // (1024 * 1024)} MiB of decompressed data")


# Length-prefixed arguments: the pickletools size code -> (prefix width, struct format).
_PREFIXED: Final = {
    pickletools.TAKEN_FROM_ARGUMENT1: (1, "<B"),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, "<i"),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, "<I"),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, "<Q"),
}
# Fixed-size arguments, decoded here (as pickletools would) to spare a stream per opcode.
_FIXED: Final[dict[str, Callable[[bytes], Any]]] = {
    "uint1": lambda b: b[0],
    "uint2": lambda b: struct.unpack("<H", b)[0],
    "int4": lambda b: struct.unpack("<i", b)[0],
    "uint4": lambda b: struct.unpack("<I", b)[0],
    "uint8": lambda b: struct.unpack("<Q", b)[0],
    "float8": lambda b: struct.unpack(">d", b)[0],
}
# Length-prefixed arguments by a word of their pickletools name (first match wins): what a long
# one stands for, and how a kept one is decoded.
_PAYLOADS: Final[tuple[tuple[str, str, Callable[[bytes], Any]], ...]] = (
    ("bytearray", "bytearray", bytearray),
    ("bytes", "bytes", bytes),
    ("long", "int", lambda b: int.from_bytes(b, "little", signed=True)),
    ("unicode", "str", lambda b: b.decode("utf-8", "surrogatepass")),
    ("string", "str", lambda b: b.decode("latin-1")),  # a Python 2 str
)


def _payload(arg_name: str) -> tuple[str, Callable[[bytes], Any]]:
    return next((kind, dec) for word, kind, dec in _PAYLOADS if word in arg_name)


def read_arg(src: Source, desc: pickletools.ArgumentDescriptor) -> Any:
    """Decode one opcode argument as pickletools would; stand for long ones with a Blob."""
    try:
        if desc.n >= 0:
            return _FIXED[desc.name](src.read(desc.n))
        if desc.n == pickletools.UP_TO_NEWLINE:
            start = src.pos
            count = 2 if desc.name == "stringnl_noescape_pair" else 1
            lines = [src.readline() for _ in range(count)]
            if None in lines:
                return Blob(_text_kind(desc.name), src.pos - start)
            return _decode_text(desc, b"".join(line for line in lines if line is not None))
        width, fmt = _PREFIXED[desc.n]
        (length,) = struct.unpack(fmt, src.read(width))
    except ValueError as err:  # UnicodeDecodeError too
        raise NotAPickle(f"bad {desc.name} argument before byte {src.pos}: {err}") from None
    return _prefixed(src, desc.name, length)


def _text_kind(arg_name: str) -> str:
    return "int" if "decimal" in arg_name else "float" if "float" in arg_name else "str"


def _decode_text(desc: pickletools.ArgumentDescriptor, raw: bytes) -> Any:
    """A protocol-0 argument, decoded by pickletools (quiet about odd escapes, as pickle is)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return desc.reader(io.BytesIO(raw))


def _prefixed(src: Source, name: str, length: int) -> Any:
    kind, decode = _payload(name)
    if length < 0:
        raise NotAPickle(f"negative length {length} before byte {src.pos}")
    if length > KEEP_BYTES:
        src.skip(length)
        return Blob(kind, length)
    try:
        return decode(src.read(length))
    except ValueError as err:
        raise NotAPickle(f"bad {name} argument before byte {src.pos}: {err}") from None
