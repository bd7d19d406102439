"""Which database errors pass (StoreUnavailable: a scheduler or writer tries again) and which do
not, each produced for real: a refused connection, a lock held past the statement timeout, a
deadlock, SQLite's write lock; a missing table is no passing error."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy import exc as sa_exc

from rota.errors import StoreError, StoreUnavailable
from rota.store.base import NewTask
from rota.store.sql import open_store
from rota.store.transient import is_transient

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: nobody listens


@pytest.mark.postgres
def test_a_database_that_refuses_connections_is_unavailable_not_broken() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/nodb"
    with pytest.raises(StoreUnavailable) as caught:
        open_store(url, connect_timeout=2)
    assert isinstance(caught.value, StoreError)  # the CLI's one-line message is unchanged
    assert "cannot open" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.postgres
def test_a_lock_held_past_the_statement_timeout_is_unavailable(postgres_url: str) -> None:
    with open_store(postgres_url) as setup:
        setup.create_run("r", "f", {}, [NewTask("t", "python", "h")], T0)
    with open_store(postgres_url, statement_timeout=0.3) as store:
        holder = create_engine(postgres_url)
        try:
            with holder.begin() as conn:
                conn.execute(text("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE"))
                with pytest.raises(StoreUnavailable, match="statement timeout"):
                    store.get_run("r")
            assert store.get_run("r").run_id == "r"  # the lock is gone: the same call works
        finally:
            holder.dispose()


@pytest.mark.postgres
def test_a_deadlock_passes(postgres_url: str) -> None:
    with open_store(postgres_url) as setup:
        for run_id in ("a", "b"):
            setup.create_run(run_id, "f", {}, [NewTask("t", "python", "h")], T0)
        engine = setup.engine
        first, second = engine.connect(), engine.connect()
        errors: list[sa_exc.SQLAlchemyError] = []
        locked = threading.Event()

        def update(conn: Connection, mine: str, theirs: str, wait: Callable[[], object]) -> None:
            statement = text("UPDATE runs SET state = state WHERE run_id = :id")
            try:
                with conn.begin():
                    conn.execute(statement, {"id": mine})
                    wait()
                    conn.execute(statement, {"id": theirs})
            except sa_exc.SQLAlchemyError as err:
                errors.append(err)

        other = threading.Thread(target=update, args=(second, "b", "a", locked.wait))
        other.start()
        update(first, "a", "b", lambda: (locked.set(), threading.Event().wait(0.5)))
        other.join(30)
        first.close()
        second.close()
    assert len(errors) == 1, errors  # PostgreSQL ended one of the two
    assert "deadlock" in str(errors[0]) and is_transient(errors[0])


def test_sqlites_write_lock_passes_and_a_missing_table_does_not(tmp_path: Path) -> None:
    path = tmp_path / "lock.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    try:
        with pytest.raises(sa_exc.OperationalError) as locked, engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        assert is_transient(locked.value)
        holder.execute("ROLLBACK")
        with pytest.raises(sa_exc.OperationalError) as missing, engine.begin() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))
        assert not is_transient(missing.value)
    finally:
        holder.close()
        engine.dispose()


@pytest.mark.postgres
def test_postgresql_connections_notice_a_vanished_host_through_tcp_keepalives(
    postgres_url: str,
) -> None:
    with open_store(postgres_url) as store, store.engine.connect() as conn:
        params = conn.connection.dbapi_connection.info.get_parameters()
    assert (params["keepalives"], params["keepalives_idle"]) == ("1", "10")
    assert (params["keepalives_interval"], params["keepalives_count"]) == ("5", "3")
