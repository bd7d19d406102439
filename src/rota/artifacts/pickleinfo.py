"""What a pickle holds, read from its opcodes without running any of them.

Unpickling runs code: a pickle names functions to import and call, and ``pickle.load`` does both.
:func:`read_pickle` runs the opcodes on :class:`~rota.artifacts.picklevm.Machine` instead, which
builds literals only and records every import and call, then names what the pickle would return:
its class (or, for a value made by calling a function, that function) and every global it names.
A hostile pickle can say what it would do and do none of it.

The reading is bounded whatever the input (see :mod:`~rota.artifacts.picklebytes` and
:mod:`~rota.artifacts.picklevm`): past a budget it stops with what it has seen (``complete`` is
then False). A stream that is not a pickle (an unknown opcode, a missing STOP, a stack that
underflows) raises :class:`NotAPickle`. joblib files are read by :mod:`~rota.artifacts.joblibinfo`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from rota.artifacts.picklebytes import Blob, NotAPickle, Source, StopReading
from rota.artifacts.picklevm import Box, Machine, Made, Ref

__all__ = ["NotAPickle", "PickleInfo", "analyse", "first", "names", "read_pickle", "type_of"]


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
