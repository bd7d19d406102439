"""How task outputs become bytes: one small serializer per kind of value, chosen by type.

The order of :data:`SERIALIZERS` is the order of choice: plain data as JSON, numpy arrays as
``.npy``, pandas DataFrames and pyarrow Tables as Parquet, scikit-learn estimators through joblib,
and cloudpickle for everything else. A task may name one (``serializer="json"``) instead.

numpy, pandas, pyarrow and joblib are imported only when a value of theirs appears: each
``accepts`` looks at the package of ``type(value)`` first, so a plain-data flow never imports them.
"""

from __future__ import annotations

import json
import math
import pickle
from typing import Any, BinaryIO, Final, Protocol

import cloudpickle

from rota.errors import ArtifactError, DefinitionError

# Python refuses to turn ints of more than 4300 digits into text (sys.int_info), so JSON could
# write them but not read them back; 13,000 bits is about 3,900 digits.
_JSON_MAX_INT_BITS: Final = 13_000


class Serializer(Protocol):
    """Turns one kind of value into bytes and back; ``load(dump(v))`` equals *v*."""

    @property
    def name(self) -> str:
        """The name a task gives to choose this serializer, and the one stored with the output."""

    @property
    def extension(self) -> str:
        """The file extension of stored outputs, with its dot (``".json"``)."""

    def accepts(self, value: Any) -> bool:
        """Whether *value* is of the kind this serializer stores (and gets back) exactly."""

    def dump(self, value: Any, fh: BinaryIO) -> None:
        """Write *value* to the binary stream *fh*."""

    def load(self, fh: BinaryIO) -> Any:
        """Read one value from the binary stream *fh* (seekable)."""


def _package_of(value: Any) -> str:
    """The top-level package of *value*'s class: no import needed to ask, and none is done.

    The top level, since libraries move classes: pandas 3 gives ``DataFrame.__module__`` as
    ``"pandas"``, pandas 2 as ``"pandas.core.frame"``.
    """
    return type(value).__module__.partition(".")[0]


def _is_plain_scalar(item: Any) -> bool:
    kind = type(item)
    if kind is int:
        return bool(item.bit_length() <= _JSON_MAX_INT_BITS)
    if kind is float:
        return math.isfinite(item)
    return item is None or kind is bool or kind is str


def _is_plain(value: Any) -> bool:
    """Whether *value* is plain data that JSON gives back exactly (same types, same values).

    Tuples and sets would come back as lists, NaN and infinities are not JSON, subclasses (enums,
    ``bool`` aside) would lose their class, and a list or dict reached twice would lose its sharing.
    """
    stack, seen = [value], set[int]()
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is list or kind is dict:
            if id(item) in seen:
                return False
            seen.add(id(item))
            if kind is dict and any(type(key) is not str for key in item):
                return False
            stack.extend(item.values() if kind is dict else item)
        elif not _is_plain_scalar(item):
            return False
    return True


class JsonSerializer:
    """Plain data (None, bool, int, finite float, str, lists and str-keyed dicts of those)."""

    name = "json"
    extension = ".json"

    def accepts(self, value: Any) -> bool:
        """True for plain data that JSON gives back exactly; see :func:`_is_plain`."""
        return _is_plain(value)

    def dump(self, value: Any, fh: BinaryIO) -> None:
        """Write *value* as UTF-8 JSON."""
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        fh.write(text.encode("utf-8"))

    def load(self, fh: BinaryIO) -> Any:
        """Read UTF-8 JSON."""
        return json.loads(fh.read().decode("utf-8"))


class NpySerializer:
    """numpy arrays of a non-object dtype, in numpy's own ``.npy`` format (no pickles inside)."""

    name = "npy"
    extension = ".npy"

    def accepts(self, value: Any) -> bool:
        """True for an exact ``numpy.ndarray`` whose dtype holds no Python objects."""
        if _package_of(value) != "numpy":
            return False
        import numpy as np

        return type(value) is np.ndarray and not value.dtype.hasobject

    def dump(self, value: Any, fh: BinaryIO) -> None:
        """Write *value* with ``numpy.save``."""
        import numpy as np

        np.save(fh, value, allow_pickle=False)

    def load(self, fh: BinaryIO) -> Any:
        """Read an array with ``numpy.load``."""
        import numpy as np

        return np.load(fh, allow_pickle=False)


# The schema metadata key that tells a stored DataFrame from a stored Table.
_KIND_KEY: Final = b"rota.kind"


class ParquetSerializer:
    """pandas DataFrames (index kept) and pyarrow Tables, as Parquet; each comes back as itself."""

    name = "parquet"
    extension = ".parquet"

    def accepts(self, value: Any) -> bool:
        """True for an exact ``pandas.DataFrame`` or ``pyarrow.Table``."""
        package = _package_of(value)
        if package == "pandas":
            import pandas as pd

            return type(value) is pd.DataFrame
        if package == "pyarrow":
            import pyarrow as pa

            return type(value) is pa.Table
        return False

    def dump(self, value: Any, fh: BinaryIO) -> None:
        """Write *value* as one Parquet file, its kind recorded in the schema metadata."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if isinstance(value, pa.Table):
            table, kind = value, b"arrow"
        else:  # the index goes into pandas' own metadata (or a column), so it comes back
            table, kind = pa.Table.from_pandas(value), b"pandas"
        metadata = dict(table.schema.metadata or {})
        metadata[_KIND_KEY] = kind
        pq.write_table(table.replace_schema_metadata(metadata), fh)

    def load(self, fh: BinaryIO) -> Any:
        """Read the Parquet file back as the DataFrame or Table it was."""
        import pyarrow.parquet as pq

        table = pq.read_table(fh)
        metadata = dict(table.schema.metadata or {})
        kind = metadata.pop(_KIND_KEY, b"arrow")
        table = table.replace_schema_metadata(metadata or None)
        return table.to_pandas() if kind == b"pandas" else table


class JoblibSerializer:
    """scikit-learn estimators and other ``sklearn`` objects, through ``joblib``."""

    name = "joblib"
    extension = ".joblib"

    def accepts(self, value: Any) -> bool:
        """True when the value's class comes from the ``sklearn`` package."""
        return _package_of(value) == "sklearn"

    def dump(self, value: Any, fh: BinaryIO) -> None:
        """Write *value* with ``joblib.dump``."""
        import joblib

        joblib.dump(value, fh)

    def load(self, fh: BinaryIO) -> Any:
        """Read a value with ``joblib.load``."""
        import joblib

        return joblib.load(fh)


class PickleSerializer:
    """Anything cloudpickle can pickle (local classes and closures too): the fallback."""

    name = "pickle"
    extension = ".pkl"

    def accepts(self, value: Any) -> bool:
        """Always True: whether the value pickles is only known by trying."""
        return True

    def dump(self, value: Any, fh: BinaryIO) -> None:
        """Write *value* with cloudpickle."""
        cloudpickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, fh: BinaryIO) -> Any:
        """Unpickle one value."""
        return pickle.load(fh)


# The order of choice; the last one accepts everything.
SERIALIZERS: Final[tuple[Serializer, ...]] = (
    JsonSerializer(),
    NpySerializer(),
    ParquetSerializer(),
    JoblibSerializer(),
    PickleSerializer(),
)
FALLBACK: Final = "pickle"


def names() -> list[str]:
    """The names of the serializers, in the order they are chosen."""
    return [ser.name for ser in SERIALIZERS]


def get(name: str) -> Serializer:
    """The serializer called *name*.

    Raises:
        DefinitionError: no serializer has that name; the message lists the names.
    """
    for ser in SERIALIZERS:
        if ser.name == name:
            return ser
    raise DefinitionError(f"unknown serializer {name!r}; choose one of: {', '.join(names())}")


def choose(value: Any, override: str | None = None) -> Serializer:
    """The serializer for *value*: the one named by *override*, or the first that accepts it.

    Raises:
        DefinitionError: *override* names no serializer.
        ArtifactError: the serializer named by *override* cannot store *value* exactly.
    """
    if override is not None:
        ser = get(override)
        if not ser.accepts(value):
            raise ArtifactError(
                f"serializer {override!r} cannot store a {type(value).__qualname__} value"
            )
        return ser
    return next(ser for ser in SERIALIZERS if ser.accepts(value))
