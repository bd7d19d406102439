"""Alembic environment for the Rota store.

Rota runs migrations itself (``rota.store.sql``), passing an open connection in
``config.attributes["connection"]``; the caller owns its transaction and its lock. Without a
connection, one is made from the ``sqlalchemy.url`` option, and ``--sql`` (offline) mode works too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from rota.store.tables import metadata


def _run(connection: Connection) -> None:
    """Run the pending migrations on *connection*."""
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    """Run migrations offline (as SQL text), on the given connection, or on a new one."""
    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if not url:
        raise RuntimeError("rota migrations need a connection or the sqlalchemy.url option")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


main()
