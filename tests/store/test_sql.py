"""What only the SQL store does: SQLite settings, BEGIN IMMEDIATE, URLs and error messages.

Behaviour every store shares lives in test_contract.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from rota.errors import StoreError
from rota.model.states import TaskState
from rota.store.base import Change, NewTask
from rota.store.sql import SqlStore, open_store

T0 = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqlStore]:
    """A store on a fresh SQLite file."""
    with open_store(f"sqlite:///{tmp_path}/rota.db") as store:
        yield store


def test_sqlite_settings_are_in_effect(sqlite_store: SqlStore) -> None:
    with sqlite_store.engine.connect() as conn:
        got = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    assert got == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "busy_timeout": 30000,
    }


def test_sqlite_writes_begin_immediate_and_reads_begin_deferred(sqlite_store: SqlStore) -> None:
    # the driver's own trace: apply runs on the DBAPI connection, not through SQLAlchemy's events
    seen: list[str] = []

    def trace(dbapi: Any, _record: Any) -> None:
        dbapi.set_trace_callback(lambda s: seen.append(s) if s.startswith("BEGIN") else None)

    event.listen(sqlite_store.engine, "connect", trace)
    sqlite_store.engine.dispose()  # connections from now on are traced
    sqlite_store.create_run("r1", "f", {}, [NewTask("a", "python", "h")], T0)
    (attempt,) = sqlite_store.attempts("r1")
    sqlite_store.apply([Change(attempt.id, TaskState.SCHEDULED, TaskState.QUEUED)], at=T0)
    sqlite_store.get_run("r1")
    assert seen == ["BEGIN IMMEDIATE", "BEGIN", "BEGIN IMMEDIATE", "BEGIN"]


def test_open_creates_the_folder_of_a_sqlite_file(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/a/b/rota.db"):
        pass
    assert (tmp_path / "a" / "b" / "rota.db").is_file()


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("nonsense", "invalid database URL"),
        ("mysql://u:secret@h/db", "SQLite or PostgreSQL"),
        ("postgresql+psycopg2://u:secret@h/db", "psycopg"),
        ("postgresql://u:secret@127.0.0.1:1/db", "cannot open in postgresql+psycopg://u:***@"),
    ],
)
def test_bad_urls_raise_one_line_store_errors_without_the_password(url: str, needle: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_store(url)
    message = str(caught.value)
    assert needle in message and "secret" not in message and "\n" not in message


def test_an_unopenable_sqlite_file_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match=r"cannot open in sqlite:///.*dir\.db: unable to open"):
        open_store(f"sqlite:///{tmp_path}/dir.db")
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot create folder"):
        open_store(f"sqlite:///{tmp_path}/file/sub/rota.db")
