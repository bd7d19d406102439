"""Connecting to the store's database: URLs, engines, SQLite's settings, schema migrations.

SQLite gets WAL, ``synchronous=FULL``, a busy timeout and foreign keys on every connection, and
SQLAlchemy emits the ``BEGIN`` itself (the pysqlite recipe in SQLAlchemy's SQLite docs): ``BEGIN
IMMEDIATE`` on the :func:`writer` engine, so a writer takes the lock before it reads and waits for
it instead of failing half-way; a plain deferred ``BEGIN`` for reads.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any, Final, NoReturn

from sqlalchemy import Connection, Engine, column, create_engine, event, func, select, table
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from rota.config import DEFAULT_DB_CONNECT_TIMEOUT
from rota.errors import DatabaseUrlError, StoreError
from rota.home import FILE_MODE, private_dir

HEAD_REVISION: Final = "0008"
"""The newest migration in ``migrations/versions`` (a test checks it against Alembic's head)."""

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")
"""The Alembic script location."""

SQLITE_BUSY_TIMEOUT_S: Final = 30.0
"""How long a SQLite writer waits for the write lock before giving up."""

_KEEPALIVES: Final = {
    "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
}  # fmt: skip
_WRITE: Final = "rota_write"  # execution option: this connection's transactions will write
_MIGRATION_LOCK: Final = 0x526F7461  # PostgreSQL advisory lock key ("Rota" in ASCII)
_VERSION: Final = table("alembic_version", column("version_num")).c.version_num


def connect(
    url: str,
    *,
    connect_timeout: float = DEFAULT_DB_CONNECT_TIMEOUT,
    statement_timeout: float = 0.0,
) -> Engine:
    """An engine for *url*; nothing is opened yet, but a SQLite file is created (0600, in a 0700
    folder) so that SQLite never creates it, or its -wal and -shm files, with the umask's mode.

    Args:
        url: the database URL.
        connect_timeout: PostgreSQL: seconds a connection may take to open (0: no limit).
        statement_timeout: PostgreSQL: seconds after which the server cancels a statement
            (0: no limit).

    Raises:
        DatabaseUrlError: the URL is invalid, names another database or a bad port, or names
            PostgreSQL while psycopg is not installed.
        StoreError: the SQLite file or its folder cannot be created.
    """
    parsed = _parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return _postgres_engine(url, parsed, connect_timeout, statement_timeout)
    _make_file(parsed)
    engine = create_engine(
        parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    )
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def sqlite_file(url: str) -> Path | None:
    """The file a ``sqlite:///PATH`` URL names (None for another database or ``:memory:``).

    Raises:
        DatabaseUrlError: the URL is invalid or names a database other than SQLite or PostgreSQL.
    """
    return _sqlite_path(_parse_url(url))


def _sqlite_path(url: URL) -> Path | None:
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        return None
    return Path(database).expanduser().absolute()


def _postgres_engine(
    url: str, parsed: URL, connect_timeout: float, statement_timeout: float
) -> Engine:
    """An engine on PostgreSQL whose connections give up after the timeouts.

    Raises:
        DatabaseUrlError: psycopg 3 cannot be imported.
    """
    # TCP keepalives: a connection to a database host that vanished (no reset, no reply) fails
    # within about 25 s instead of the kernel's two hours, so a scheduler notices and waits
    args: dict[str, Any] = {k: v for k, v in _KEEPALIVES.items() if k not in parsed.query}
    if connect_timeout > 0 and "connect_timeout" not in parsed.query:
        args["connect_timeout"] = max(1, math.ceil(connect_timeout))  # libpq: whole seconds
    if statement_timeout > 0:
        given = parsed.query.get("options", "")
        extra = " ".join(given) if isinstance(given, tuple) else given
        ms = max(1, round(statement_timeout * 1000))
        args["options"] = f"-c statement_timeout={ms} {extra}".strip()
    try:
        return create_engine(parsed, connect_args=args)
    except ImportError as err:
        _bad_url(
            url,
            f"PostgreSQL needs psycopg 3, which cannot be imported ({_first(err)}); "
            "install it with: pip install 'rota[postgres]'",
        )


def writer(engine: Engine) -> Engine:
    """*engine* for write transactions: same pool, but SQLite begins them ``IMMEDIATE``."""
    return engine.execution_options(**{_WRITE: True})


def schema_revision(engine: Engine) -> str | None:
    """The schema revision recorded in the database, or None if it has no schema yet."""
    with engine.connect() as conn:
        try:
            found = conn.execute(select(_VERSION)).scalar()
        except sa_exc.ProgrammingError:
            return None  # psycopg: no such table
        except sa_exc.OperationalError as err:
            if "no such table" in str(err.orig):
                return None
            raise
    return None if found is None else str(found)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the head revision, holding SQLite's write lock or a PostgreSQL
    advisory lock: a new database gets the tables at once (:mod:`rota.store.fresh`), one with
    an older schema Alembic's upgrade.

    Concurrent callers wait for the lock, then find the schema at head and do nothing.

    Raises:
        StoreError: Alembic refused, e.g. the database has a revision newer than ours.
    """
    from rota.store import fresh

    with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
        if fresh.is_new(conn):
            fresh.create_schema(conn, HEAD_REVISION)
        else:
            _alembic_upgrade(conn)


def _alembic_upgrade(conn: Connection) -> None:
    """Run Alembic's upgrade to head on *conn* (its caller holds the lock).

    Raises:
        StoreError: Alembic refused.
    """
    from alembic import command  # imported only when migrating: CLI start-up time
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = conn
    try:
        command.upgrade(config, "head")
    except CommandError as err:
        where = conn.engine.url.render_as_string(hide_password=True)
        first = (str(err).strip().splitlines() or ["refused"])[0]
        raise StoreError(f"cannot migrate {where}: {first}") from err


def _parse_url(url: str) -> URL:
    """Parse *url*, accepting only SQLite and PostgreSQL (psycopg 3).

    Raises:
        StoreError: the URL is malformed or names another database.
    """
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        _bad_url(url, "not a database URL")
    except ValueError as err:  # e.g. a port that is not a number
        _bad_url(url, _first(err))
    if parsed.port is not None and not 0 < parsed.port < 65536:
        _bad_url(url, f"port {parsed.port} is not between 1 and 65535")
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        if parsed.drivername in ("postgres", "postgresql"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        elif parsed.drivername != "postgresql+psycopg":
            _bad_url(url, "use postgresql+psycopg:// (psycopg 3)")
    elif backend != "sqlite":
        _bad_url(url, "Rota stores runs in SQLite or PostgreSQL")
    return parsed


def _bad_url(url: str, why: str) -> NoReturn:
    """Raise DatabaseUrlError for *url*, with any password masked.

    Raises:
        DatabaseUrlError: always.
    """
    masked = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
    raise DatabaseUrlError(f"invalid database URL {masked}: {why}")


def _first(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _make_file(url: URL) -> None:
    """Create a SQLite file (empty, 0600) and its folder (0700) unless the file exists.

    SQLite gives the -wal and -shm files the mode of the database file, so they are 0600 too.

    Raises:
        StoreError: the folder or the file cannot be created.
    """
    path = _sqlite_path(url)
    if path is None:
        return
    try:
        private_dir(path.parent)
    except OSError as err:
        raise StoreError(f"cannot create folder {path.parent} for {url}: {err.strerror}") from err
    if os.path.lexists(path):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except OSError:
        return  # made meanwhile by another process, or impossible: SQLite's error will say why
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """Set up a new SQLite connection: we emit BEGIN ourselves; WAL, full sync, foreign keys."""
    dbapi_connection.isolation_level = None  # sqlite3 must not BEGIN (or COMMIT) on its own
    cursor = dbapi_connection.cursor()
    try:
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Switch the database to WAL mode (stored in the file, so usually already done).

    Raises:
        sqlite3.OperationalError: the database stayed locked for the whole busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            # Switching a new file to WAL while another process does the same fails at once with
            # "database is locked": SQLite's busy handler does not cover it, so we wait here.
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


def _sqlite_begin(conn: Connection) -> None:
    """Begin a transaction: IMMEDIATE (take the write lock now) for writers, deferred for reads."""
    writes = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")
