"""Reading rows into records, naming the rows that cannot be read.

A row written by Rota always reads back. One changed by hand, by a bug or by a disk fault may not:
a state the state machine does not know, params that are not JSON, garbage in a timestamp. Such a
row must never take every other row down with it, nor vanish: :func:`read_records` reads the good
rows and reports each bad one as a :class:`~rota.errors.CorruptRow` naming its key and what is
wrong with it, to the caller's handler or, without one, by raising it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from sqlalchemy import Column, Connection, RowMapping, Select, select

from rota.errors import CorruptRow

T = TypeVar("T")
Convert = Callable[[RowMapping], T]
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
        on_corrupt: called with each bad row, which is then left out; without it, the first bad
            row is raised.

    Raises:
        CorruptRow: a row cannot be read and *on_corrupt* is None.
    """
    result = conn.execute(query)
    try:
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
