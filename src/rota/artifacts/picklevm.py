"""A pickle virtual machine that builds literals only: every import and call is a record of it.

:class:`Machine` steps through a pickle's opcodes as ``pickle.load`` would, with one difference:
numbers, short strings and containers are built, but a global is a :class:`Ref` (its name; nothing
is imported) and a call or instantiation is a :class:`Made` (what would be called, with what).
Its stacks are plain lists, so nesting costs no recursion; containers keep their first
:data:`KEEP_ITEMS` items and a count; :data:`MAX_OPCODES` and :data:`MAX_DEPTH` bound the work.
"""

from __future__ import annotations

import pickletools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from rota.artifacts.picklebytes import Blob, NotAPickle, Source, StopReading, read_arg

KEEP_ITEMS: Final = 256
MAX_OPCODES: Final = 1_000_000
MAX_DEPTH: Final = 10_000


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
            ops[op.name](None if op.arg is None else read_arg(src, op.arg))

    def bottom(self) -> Any:
        """The outermost value so far: what the pickle is building, if it stopped now."""
        level = self.marks[0] if self.marks else self.stack
        return level[0] if level else Blob("nothing read yet", 0)


def _counted(items: list[Any]) -> tuple[list[Any], int]:
    return items[:KEEP_ITEMS], len(items)
