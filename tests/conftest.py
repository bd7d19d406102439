"""Fixtures shared by the whole test suite: real backing services, started once per session."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pgserver import PgServer

# --- PostgreSQL: a real server per test session (initdb + pg_ctl as the postgres user) --------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Start a throw-away PostgreSQL server on 127.0.0.1; yield its base URL (no database)."""
    server = PgServer()
    server.start()
    try:
        yield server.base_url
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres_database_factory(postgres_server: str) -> Callable[[], str]:
    """A function that creates a fresh, empty database on the session's server; returns its URL."""
    import psycopg  # only tests that use PostgreSQL need the driver
    from psycopg import sql

    numbers = itertools.count()
    port = int(postgres_server.rsplit(":", 1)[1].rstrip("/"))
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"

    def new_database() -> str:
        name = f"rota_test_{next(numbers)}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return f"{postgres_server}{name}"

    return new_database


@pytest.fixture
def postgres_url(postgres_database_factory: Callable[[], str]) -> str:
    """A fresh, empty database on the session's PostgreSQL server; its URL (~0.25 s each)."""
    return postgres_database_factory()


# --- a webhook's far end: a real HTTP server on 127.0.0.1 (tests/webhook_sink.py) ------------


@pytest.fixture
def hook() -> Iterator[Any]:
    """A running :class:`webhook_sink.Hook` that records every POST; closed after the test."""
    from webhook_sink import Hook

    h = Hook()
    yield h
    h.close()
