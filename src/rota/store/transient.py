"""Which database errors pass: those after which the same transaction may simply be tried again.

A scheduler or a runner keeps going through them (:class:`~rota.errors.StoreUnavailable`): the
database is out of reach (refused or lost connection, a server shutting down or starting up, too
many connections), or it rolled the transaction back for a reason of the moment (deadlock,
serialization failure, lock or statement timeout, SQLite's write lock held too long). Everything
else (a missing table, a constraint, bad SQL) is a :class:`~rota.errors.StoreError` as before.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from sqlalchemy import exc as sa_exc

TRANSIENT_SQLSTATES: Final = (
    "08",  # connection exception
    "40",  # transaction rollback: serialization failure, deadlock detected
    "53",  # insufficient resources: too many connections, out of memory or disk
    "55P03",  # lock not available (lock_timeout, NOWAIT)
    "57014",  # query canceled (statement_timeout)
    "57P01",  # admin shutdown
    "57P02",  # crash shutdown
    "57P03",  # cannot connect now: the server is starting up or shutting down
    "57P05",  # idle session timeout
)
"""PostgreSQL error codes (or their classes) that pass."""

_SQLITE_TRANSIENT: Final = ("database is locked", "database is busy", "database table is locked")


def is_transient(err: sa_exc.SQLAlchemyError) -> bool:
    """Whether *err* (raised by SQLAlchemy) passes, so that retrying the transaction makes sense."""
    if isinstance(err, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if not isinstance(err, sa_exc.DBAPIError):
        return False
    if err.connection_invalidated:  # SQLAlchemy saw the connection die
        return True
    orig = err.orig
    state = getattr(orig, "sqlstate", None)  # psycopg 3
    if isinstance(state, str) and state:
        return state.startswith(TRANSIENT_SQLSTATES)
    if isinstance(orig, sqlite3.OperationalError):
        return any(text in str(orig) for text in _SQLITE_TRANSIENT)
    # psycopg without a SQLSTATE: the server never answered (refused, unreachable, timed out)
    return isinstance(err, sa_exc.OperationalError)
