"""Reading rows into records, naming the rows that cannot be read.

A row written by Rota always reads back. One changed by hand, by a bug or by a disk fault may not:
a state the state machine does not know, params that are not JSON, garbage in a timestamp. Such a
row must never take every other row down with it, nor vanish: :func:`read_records` reads the good
rows and reports each bad one as a :class:`~rota.errors.CorruptRow` naming its key and what is
wrong with it, to the caller's handler or, without one, by raising it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, fields, is_dataclass
from operator import itemgetter
from typing import Any, Final, TypeVar, cast

from sqlalchemy import Column, Connection, Result, RowMapping, Select, select

from rota.errors import CorruptRow

T = TypeVar("T")
Convert = Callable[[RowMapping], T]
ConvertAll = Callable[[Result[Any]], list[T]]
OnCorrupt = Callable[[CorruptRow], None]

ROW_ERRORS: Final = (ValueError, TypeError, AttributeError, KeyError)
"""What a bad stored value raises while its row becomes a record: a JSON or timestamp column's
decoder fails, or the record's own checks (:func:`~rota.store.writes.run_record`) refuse it."""


def read_records(
    conn: Connection,
    query: Select[Any],
    key: Column[Any],
    convert: Convert[T],
    *,
    kind: str,
    on_corrupt: OnCorrupt | None = None,
    convert_all: ConvertAll[T] | None = None,
) -> list[T]:
    """The records of the rows *query* selects, in its order.

    Reading is one query while every row is good. When one is not, the rows are read again one by
    one by *key*, so that each bad row is named.

    Args:
        conn: the connection to read on.
        query: a select of whole rows of one table (its where, order and limit are kept).
        key: the table's key column, which names a row in a report.
        convert: makes a record from a row mapping; raises one of :data:`ROW_ERRORS` if it
            cannot.
        kind: what a row is, for reports (``run``, ``attempt``).
        convert_all: makes the records of a whole result at once, as *convert* would make each
            (faster: see :func:`record_maker`); *convert* then reads the rows again one by one
            only when a row is bad.
        on_corrupt: called with each bad row, which is then left out; without it, the first bad
            row is raised.

    Raises:
        CorruptRow: a row cannot be read and *on_corrupt* is None.
    """
    result = conn.execute(query)
    try:
        if convert_all is not None:
            return convert_all(result)
        return [convert(row._mapping) for row in result]
    except ROW_ERRORS:
        result.close()
    keys = conn.execute(query.with_only_columns(key)).scalars().all()
    out: list[T] = []
    for value in keys:
        try:
            record = read_one(conn, select(key.table).where(key == value), key, convert, kind=kind)
        except CorruptRow as bad:
            if on_corrupt is None:
                raise
            on_corrupt(bad)
            continue
        if record is not None:  # deleted since the keys were read
            out.append(record)
    return out


def read_one(
    conn: Connection, query: Select[Any], key: Column[Any], convert: Convert[T], *, kind: str
) -> T | None:
    """The record of the one row *query* selects, or None if it selects none.

    Raises:
        CorruptRow: the row cannot be read; the problem names the columns that do not decode.
    """
    try:
        row = conn.execute(query).one_or_none()
        return None if row is None else convert(row._mapping)
    except ROW_ERRORS as err:
        name = conn.execute(query.with_only_columns(key)).scalar()
        problem = _problem(conn, query, err)
        raise CorruptRow(kind, str(name), problem) from err


def _problem(conn: Connection, query: Select[Any], err: BaseException) -> str:
    """What is wrong with the row: *err*, prefixed by the columns that do not decode, if any."""
    bad = []
    for column in query.selected_columns:
        try:
            conn.execute(query.with_only_columns(column)).one_or_none()
        except ROW_ERRORS:
            bad.append(str(column.name))
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{', '.join(bad)}: {text}" if bad else text


def record_maker(
    cls: type[T], columns: Sequence[str], convert: Mapping[str, Callable[[Any], Any]]
) -> Callable[[Sequence[Any]], T]:
    """A function making a *cls* from a row whose columns are *columns* (by name), each field's
    value passed through its *convert* function if it has one.

    *cls* is a dataclass with slots whose generated ``__init__`` only stores its arguments (no
    ``__post_init__``), and *columns* hold every field: the record's slots are then set directly.
    A frozen dataclass's ``__init__`` guards each assignment, which for an attempt's 32 fields is
    four times the cost of reading the row (15 µs a record here, 3.6 µs this way: attempts are
    read by the thousand when a run starts and when it ends).

    Raises:
        TypeError: *cls* is not such a dataclass, or a field has no column and no default.
    """
    if not is_dataclass(cls) or not hasattr(cls, "__slots__") or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: a dataclass with slots and no __post_init__ is needed")
    index = {name: i for i, name in enumerate(columns)}
    names = [f.name for f in fields(cast(Any, cls))]
    if not all(name in index for name in names):
        return _by_keyword(cls, columns, convert)
    setters = [getattr(cls, name).__set__ for name in names]
    take = itemgetter(*(index[name] for name in names))
    converted = [(getattr(cls, name).__set__, index[name], fn) for name, fn in convert.items()]
    new = object.__new__

    def make(row: Sequence[Any]) -> T:
        record = new(cls)
        for setter, value in zip(setters, take(row), strict=True):
            setter(record, value)
        for setter, at, fn in converted:
            setter(record, fn(row[at]))
        return record

    return make


def _by_keyword(
    cls: type[T], columns: Sequence[str], convert: Mapping[str, Callable[[Any], Any]]
) -> Callable[[Sequence[Any]], T]:
    """record_maker's way when some fields have no column: the dataclass's own __init__.

    Raises:
        TypeError: a field has no column and no default.
    """
    known = set(columns)
    for f in fields(cast(Any, cls)):
        if f.name not in known and f.default is MISSING and f.default_factory is MISSING:
            raise TypeError(f"{cls.__name__}: no column for field {f.name!r}")

    def make(row: Sequence[Any]) -> T:
        values = dict(zip(columns, row, strict=True))
        for name, fn in convert.items():
            if name in values:
                values[name] = fn(values[name])
        return cls(**values)

    return make
