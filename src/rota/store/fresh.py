"""A new database's schema in one transaction, without Alembic.

Replaying every migration on an empty database gives the schema of :mod:`rota.store.tables`
(a test compares the two, table by table), so a database with none of our tables gets those
tables directly: ``metadata.create_all``, the rows the migrations seed, and Alembic's version
row at the head revision, so that a later release's migrations start from there. Importing
Alembic and replaying eight migrations cost a new store about a tenth of a second, which a
one-task ``rota run`` in a fresh ``ROTA_HOME`` paid on every start. (Airflow creates a new
metadata database from its models and stamps it the same way.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Column, Connection, MetaData, PrimaryKeyConstraint, String, Table, inspect

from rota.model.pools import DEFAULT_POOL, DEFAULT_POOL_SLOTS
from rota.store.tables import metadata, pools

alembic_version: Final = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
"""Alembic's version table, declared as Alembic itself creates it."""


def is_new(conn: Connection) -> bool:
    """True if the database on *conn* holds neither Alembic's version table nor any of ours."""
    ours = set(metadata.tables) | {alembic_version.name}
    return not ours.intersection(inspect(conn).get_table_names())


def create_schema(conn: Connection, revision: str) -> None:
    """Create every table, seed ``default_pool`` and record *revision*, on *conn* (its caller
    owns the transaction and the lock that keeps a second creator out)."""
    metadata.create_all(conn)
    alembic_version.create(conn)
    conn.execute(alembic_version.insert().values(version_num=revision))
    conn.execute(
        pools.insert().values(
            name=DEFAULT_POOL,
            slots=DEFAULT_POOL_SLOTS,
            description="Default pool",
            updated_at=datetime.now(UTC),
        )
    )
