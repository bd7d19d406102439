"""The SQL behind datasets and lineage: versions produced by tasks, and reads by tasks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime

from sqlalchemy import Connection, func, insert, select

from rota.store.base import DatasetUse, DatasetVersion
from rota.store.tables import dataset_uses, dataset_versions
from rota.store.writes import to_utc

_dv = dataset_versions.c
_du = dataset_uses.c


def add_version(
    conn: Connection, uri: str, content_hash: str | None, run_id: str, task_id: str, at: datetime
) -> DatasetVersion:
    """Insert the next version of *uri* (inside the caller's write transaction)."""
    latest = conn.execute(select(func.max(_dv.version)).where(_dv.uri == uri)).scalar()
    record = DatasetVersion(uri, int(latest or 0) + 1, content_hash, run_id, task_id, to_utc(at))
    conn.execute(insert(dataset_versions), asdict(record))
    return record


def add_use(conn: Connection, uri: str, run_id: str, task_id: str, at: datetime) -> DatasetUse:
    """Insert a read of *uri* at its latest version now."""
    latest = conn.execute(select(func.max(_dv.version)).where(_dv.uri == uri)).scalar()
    record = DatasetUse(uri, latest, run_id, task_id, to_utc(at))
    conn.execute(insert(dataset_uses), asdict(record))
    return record


def versions(conn: Connection, uri: str | None) -> list[DatasetVersion]:
    query = select(dataset_versions).order_by(_dv.uri, _dv.version)
    if uri is not None:
        query = query.where(_dv.uri == uri)
    return [
        DatasetVersion(r.uri, r.version, r.content_hash, r.run_id, r.task_id, r.created_at)
        for r in conn.execute(query)
    ]


def uses(conn: Connection, uri: str) -> list[DatasetUse]:
    query = select(dataset_uses).where(_du.uri == uri).order_by(_du.id)
    return [
        DatasetUse(r.uri, r.version, r.run_id, r.task_id, r.used_at) for r in conn.execute(query)
    ]


def new_versions(conn: Connection, uris: Sequence[str], since: datetime | None) -> dict[str, int]:
    query = select(_dv.uri, func.count()).where(_dv.uri.in_(list(uris))).group_by(_dv.uri)
    if since is not None:
        query = query.where(_dv.created_at > to_utc(since))
    found = {row[0]: int(row[1]) for row in conn.execute(query)}
    return {uri: found.get(uri, 0) for uri in uris}
