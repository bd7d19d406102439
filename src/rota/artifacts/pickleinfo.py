"""What a pickle holds, read from its opcodes without running any of them.

Unpickling runs code: a pickle names functions to import and call, and ``pickle.load`` does both.
:func:`read_pickle` reads the opcode stream instead with a small machine that builds literals only
(numbers, short strings, containers). Every import becomes a :class:`Ref` and every call or
instantiation a :class:`Made` that records what *would* have been called, so a hostile pickle can
say what it would do and do none of it. Nothing here imports, calls or unpickles anything the
stream names; ``pickletools`` is used for its opcode table and argument decoders only.

The reader is bounded whatever the input: strings and bytes longer than a few KiB are skipped,
not kept; containers keep their first items and a count; a stream that goes on past
:data:`MAX_OPCODES` opcodes, nests deeper than :data:`MAX_DEPTH` marks or makes the reader
decompress more than :data:`MAX_SCAN_BYTES` stops early with what it has seen (``complete`` is
then False). A stream that is not a pickle (an unknown opcode, a missing STOP, a stack that
underflows) raises :class:`NotAPickle`.

joblib files (:func:`read_joblib`) are pickles with each numpy array's bytes written raw after
its ``NumpyArrayWrapper``, optionally compressed as a whole; both are handled here.
"""

from __future__ import annotations

import io
import pickletools
import struct
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final

KEEP_BYTES: Final = 4096
"""Strings and bytes up to this long are kept (module and class names are short); longer ones
are skipped and stand as a :class:`Blob`."""
KEEP_ITEMS: Final = 256
MAX_OPCODES: Final = 1_000_000
MAX_DEPTH: Final = 10_000
MAX_SCAN_BYTES: Final = 512 * 1024 * 1024
_LINE_LIMIT: Final = 64 * 1024
_CHUNK: Final = 64 * 1024
SKIP_CHUNK: Final = 1024 * 1024


class NotAPickle(ValueError):
    """Raised when a stream is not a pickle that could load: bad opcode, truncated, malformed."""


class StopReading(Exception):
    """Raised inside this module when the reader stops early (a budget, an unknown layout)."""


@dataclass(frozen=True, slots=True)
class Ref:
    """A global the pickle would import (``module.qualname``); never imported here."""

    name: str


@dataclass(eq=False, slots=True)
class Made:
    """An object the pickle would make by calling *callee* (REDUCE) or instantiating it."""

    callee: Any
    args: Any
    how: str  # "call" (REDUCE), "new" (NEWOBJ, OBJ, INST), "persistent" (a persistent id)
    state: Any = None


@dataclass(eq=False, slots=True)
class Box:
    """A container the pickle builds: its kind, its first items and how many it has in all."""

    kind: str  # list, tuple, dict (items are (key, value) pairs), set, frozenset
    items: list[Any] = field(default_factory=list)
    count: int = 0

    def add(self, values: list[Any]) -> None:
        self.count += len(values)
        room = KEEP_ITEMS - len(self.items)
        if room > 0:
            self.items.extend(values[:room])

    def get(self, key: str) -> Any:
        """The value of *key* in a dict box (None when absent)."""
        return next((v for k, v in self.items if k == key), None)


@dataclass(frozen=True, slots=True)
class Blob:
    """A value too long to keep: its kind (``str``, ``bytes``, ``int``...) and size in bytes."""

    kind: str
    size: int


@dataclass(frozen=True, slots=True)
class PickleInfo:
    """What :func:`read_pickle` found out about a pickle, without loading it."""

    type_name: str
    """The class of the value, or for a value made by calling a function, that function."""
    made_by_call: bool
    """True when the value is whatever ``type_name(...)`` returns (a REDUCE), not an instance."""
    imports: tuple[str, ...]
    """Every global the pickle names (would import), in order of first mention."""
    protocol: int
    opcodes: int
    complete: bool
    """False when the reader stopped early; ``note`` says why."""
    note: str = ""


# --- the byte source ---------------------------------------------------------------------------


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


def _read_arg(src: Source, desc: pickletools.ArgumentDescriptor) -> Any:
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


# --- the machine -------------------------------------------------------------------------------

_CONSTANTS: Final[dict[str, Callable[[], Any]]] = {
    "NONE": lambda: None,
    "NEWTRUE": lambda: True,
    "NEWFALSE": lambda: False,
    "EMPTY_LIST": lambda: Box("list"),
    "EMPTY_TUPLE": lambda: Box("tuple"),
    "EMPTY_DICT": lambda: Box("dict"),
    "EMPTY_SET": lambda: Box("set"),
}
_LITERALS: Final = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "BYTEARRAY8", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
})  # fmt: skip
_IGNORED: Final = frozenset({"FRAME", "READONLY_BUFFER"})
_OPCODES: Final = {op.code.encode("latin-1"): op for op in pickletools.opcodes}


def _pairs(items: list[Any]) -> list[Any]:
    if len(items) % 2:
        raise NotAPickle("a dict built from an odd number of items")
    return list(zip(items[::2], items[1::2], strict=True))


class Machine:
    """The pickle virtual machine with every import and call replaced by a record of it."""

    def __init__(
        self, src: Source, *, after_build: Callable[[Machine], None] | None = None
    ) -> None:
        self.src = src
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.imports: dict[str, None] = {}
        self.protocol = 0
        self.opcodes = 0
        self._after_build = after_build
        self._ops: dict[str, Callable[[Any], None]] = {
            "MARK": self._mark, "POP": self._pop_any, "POP_MARK": self._drop_mark,
            "DUP": lambda _: self.push(self.top()), "PROTO": self._proto,
            "LIST": lambda _: self._built("list"), "TUPLE": lambda _: self._built("tuple"),
            "FROZENSET": lambda _: self._built("frozenset"),
            "DICT": lambda _: self.push(Box("dict", *_counted(_pairs(self._pop_mark())))),
            "TUPLE1": lambda _: self._tuple(1), "TUPLE2": lambda _: self._tuple(2),
            "TUPLE3": lambda _: self._tuple(3),
            "APPEND": lambda _: self._extend([self.pop()]),
            "APPENDS": lambda _: self._extend(self._pop_mark()),
            "ADDITEMS": lambda _: self._extend(self._pop_mark()),
            "SETITEM": lambda _: self._extend(_pairs(self._popn(2))),
            "SETITEMS": lambda _: self._extend(_pairs(self._pop_mark())),
            "PUT": self._put, "BINPUT": self._put, "LONG_BINPUT": self._put,
            "MEMOIZE": lambda _: self._put(len(self.memo)),
            "GET": self._get, "BINGET": self._get, "LONG_BINGET": self._get,
            "GLOBAL": self._global, "STACK_GLOBAL": self._stack_global,
            "EXT1": self._ext, "EXT2": self._ext, "EXT4": self._ext,
            "REDUCE": lambda _: self._make(2, "call"), "NEWOBJ": lambda _: self._make(2, "new"),
            "NEWOBJ_EX": lambda _: self._make(3, "new"), "OBJ": self._obj, "INST": self._inst,
            "BUILD": self._build, "PERSID": self._persistent,
            "BINPERSID": lambda _: self._persistent(self.pop()),
            "NEXT_BUFFER": lambda _: self.push(Blob("out-of-band buffer", 0)),
        }  # fmt: skip
        for name in _LITERALS:
            self._ops[name] = self.push
        for name, make in _CONSTANTS.items():
            self._ops[name] = lambda _, make=make: self.push(make())  # type: ignore[misc]
        for name in _IGNORED:
            self._ops[name] = lambda _: None

    # stack primitives
    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack:
            raise NotAPickle(f"stack underflow at byte {self.src.pos}")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise NotAPickle(f"stack underflow at byte {self.src.pos}")
        return self.stack[-1]

    def _popn(self, n: int) -> list[Any]:
        items = [self.pop() for _ in range(n)]
        items.reverse()
        return items

    def _mark(self, _: Any) -> None:
        if len(self.marks) >= MAX_DEPTH:
            raise StopReading(f"nested more than {MAX_DEPTH} levels deep")
        self.marks.append(self.stack)
        self.stack = []

    def _pop_mark(self) -> list[Any]:
        if not self.marks:
            raise NotAPickle(f"no MARK to pop to at byte {self.src.pos}")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def _drop_mark(self, _: Any) -> None:
        self._pop_mark()

    def _pop_any(self, _: Any) -> None:
        if self.stack:
            self.stack.pop()
        else:  # as in CPython: POP on an empty level removes its mark
            self._pop_mark()

    # opcodes
    def _proto(self, version: Any) -> None:
        self.protocol = self.protocol or int(version)

    def _built(self, kind: str) -> None:
        self.push(Box(kind, *_counted(self._pop_mark())))

    def _tuple(self, n: int) -> None:
        self.push(Box("tuple", *_counted(self._popn(n))))

    def _extend(self, values: list[Any]) -> None:
        target = self.top()
        if isinstance(target, Box):
            target.add(values)
        # a Made target would have append/extend/__setitem__ called on it: nothing to keep

    def _put(self, index: Any) -> None:
        self.memo[self._index(index)] = self.top()

    def _get(self, index: Any) -> None:
        key = self._index(index)
        if key not in self.memo:
            raise NotAPickle(f"memo entry {key} is read before it is stored")
        self.push(self.memo[key])

    def _index(self, index: Any) -> int:
        if type(index) is not int:  # a protocol-0 line too long to be a number
            raise NotAPickle(f"a memo index that is not a number, before byte {self.src.pos}")
        return index

    def ref(self, name: str) -> Ref:
        self.imports.setdefault(name, None)
        return Ref(name)

    def _global(self, arg: Any) -> None:
        self.push(self.ref(self._dotted(arg)))

    def _dotted(self, arg: Any) -> str:
        if not isinstance(arg, str):
            raise NotAPickle(f"a global name too long to be one, before byte {self.src.pos}")
        module, _, name = arg.partition(" ")
        return f"{module}.{name}"

    def _stack_global(self, _: Any) -> None:
        module, name = self._popn(2)
        if not isinstance(module, str) or not isinstance(name, str):
            raise NotAPickle(f"STACK_GLOBAL without two names at byte {self.src.pos}")
        self.push(self.ref(f"{module}.{name}"))

    def _ext(self, code: Any) -> None:
        self.push(self.ref(f"<copyreg extension {code}>"))

    def _make(self, n: int, how: str) -> None:
        callee, *args = self._popn(n)
        self.push(Made(callee, args[0] if len(args) == 1 else Box("tuple", args, len(args)), how))

    def _obj(self, _: Any) -> None:
        items = self._pop_mark()
        if not items:
            raise NotAPickle(f"OBJ without a class at byte {self.src.pos}")
        self.push(Made(items[0], Box("tuple", *_counted(items[1:])), "new"))

    def _inst(self, arg: Any) -> None:
        cls = self.ref(self._dotted(arg))
        self.push(Made(cls, Box("tuple", *_counted(self._pop_mark())), "new"))

    def _build(self, _: Any) -> None:
        state = self.pop()
        target = self.top()
        if isinstance(target, Made):
            target.state = state
        if self._after_build is not None:
            self._after_build(self)

    def _persistent(self, pid: Any) -> None:
        self.push(Made(self.ref("<persistent id>"), pid, "persistent"))

    # the loop
    def run(self) -> Any:
        """Step until STOP and return the value the pickle would return."""
        read, ops, src = self.src.read, self._ops, self.src
        while True:
            byte = read(1)
            op = _OPCODES.get(byte)
            if op is None:
                raise NotAPickle(f"byte {src.pos - 1} is not a pickle opcode ({byte!r})")
            self.opcodes += 1
            if self.opcodes > MAX_OPCODES:
                raise StopReading(f"read {MAX_OPCODES:,} opcodes")
            if op.name == "STOP":
                return self.pop()
            ops[op.name](None if op.arg is None else _read_arg(src, op.arg))

    def bottom(self) -> Any:
        """The outermost value so far: what the pickle is building, if it stopped now."""
        level = self.marks[0] if self.marks else self.stack
        return level[0] if level else Blob("nothing read yet", 0)


def _counted(items: list[Any]) -> tuple[list[Any], int]:
    return items[:KEEP_ITEMS], len(items)


# --- naming what was found ---------------------------------------------------------------------

# Callables that only rebuild an instance of their first argument.
_RECONSTRUCTORS: Final = frozenset(
    {
        "copyreg._reconstructor",
        "copy_reg._reconstructor",
        "copyreg.__newobj__",
        "copyreg.__newobj_ex__",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
    }
)
_CLOUDPICKLE: Final = "cloudpickle.cloudpickle."
# Callables whose result's type is known: how older protocols pickle builtins, numpy's
# protocol-5 arrays and cloudpickle's functions.
_BUILDS: Final = {
    "_codecs.encode": "bytes",
    "numpy.core.numeric._frombuffer": "numpy.ndarray",
    "numpy._core.numeric._frombuffer": "numpy.ndarray",
    _CLOUDPICKLE + "_make_function": "function (pickled by value)",
    **{
        f"{m}.{t}": t
        for m in ("builtins", "__builtin__")
        for t in ("set", "frozenset", "bytearray")
    },
}


def first(args: Any, index: int = 0) -> Any:
    if isinstance(args, Box) and len(args.items) > index:
        return args.items[index]
    return None


def class_name(cls: Any) -> str:
    """The name of a class the pickle refers to, or builds by value (cloudpickle)."""
    if isinstance(cls, Ref):
        return cls.name
    if isinstance(cls, Made) and isinstance(cls.callee, Ref):
        maker = cls.callee.name
        if maker in (_CLOUDPICKLE + "_make_skeleton_class", _CLOUDPICKLE + "_make_skeleton_enum"):
            name, namespace = first(cls.args, 1), first(cls.args, 3)
            module = namespace.get("__module__") if isinstance(namespace, Box) else None
            if isinstance(name, str):
                prefix = f"{module}." if isinstance(module, str) else ""
                return f"{prefix}{name} (class pickled by value)"
        return f"a class made by {maker}"
    return "an unknown class"


_GETATTR: Final = frozenset({"builtins.getattr", "__builtin__.getattr"})


def callable_name(value: Any) -> str | None:
    """The dotted name of a callable the pickle names: a global, or ``getattr(global, "name")``
    (how protocols before 4 name a method)."""
    if isinstance(value, Ref):
        return value.name
    if isinstance(value, Made) and value.how == "call" and callable_name(value.callee) in _GETATTR:
        owner, attr = first(value.args), first(value.args, 1)
        owner_name = callable_name(owner)
        if owner_name is not None and isinstance(attr, str):
            return f"{owner_name}.{attr}"
    return None


def type_of(value: Any) -> tuple[str, bool]:
    """(type name, made by a call) of a value the machine built."""
    if isinstance(value, Made):
        if value.how == "persistent":
            return "a persistent reference (needs the pickler's own loader)", False
        if value.how == "new":
            return class_name(value.callee), False
        callee = callable_name(value.callee)
        if callee in _RECONSTRUCTORS and first(value.args) is not None:
            return class_name(first(value.args)), False
        if callee is None:
            return "the result of a call to a callable built while loading", True
        return _BUILDS.get(callee, callee), callee not in _BUILDS
    if isinstance(value, Ref):
        return f"a reference to {value.name}", False
    if isinstance(value, Box | Blob):
        return value.kind, False
    return type(value).__name__, False


def _info(machine: Machine, value: Any, *, complete: bool, note: str = "") -> PickleInfo:
    name, called = type_of(value)
    if isinstance(value, Box):
        least = "" if complete else "at least "
        name = f"{name} of {least}{value.count} item{'' if value.count == 1 else 's'}"
    return PickleInfo(
        type_name=name,
        made_by_call=called,
        imports=tuple(machine.imports),
        protocol=machine.protocol,
        opcodes=machine.opcodes,
        complete=complete,
        note=note,
    )


def analyse(machine: Machine) -> PickleInfo:
    try:
        value = machine.run()
    except StopReading as stop:
        return _info(machine, machine.bottom(), complete=False, note=f"stopped: {stop}")
    return _info(machine, value, complete=True)


def read_pickle(stream: BinaryIO, *, seekable: bool = True) -> PickleInfo:
    """What the pickle in *stream* (from its current position) holds, without loading it.

    *seekable* says whether long values may be skipped with ``seek``; the stream's end then
    bounds every announced length.

    Raises:
        NotAPickle: the bytes are not a pickle that could load.
    """
    return analyse(Machine(Source(stream, seekable=seekable)))


def names(imports: Iterable[str], limit: int = 12) -> str:
    """*imports* as one line, the first *limit* of them."""
    listed = list(imports)
    more = f" (+{len(listed) - limit} more)" if len(listed) > limit else ""
    return ", ".join(listed[:limit]) + more
