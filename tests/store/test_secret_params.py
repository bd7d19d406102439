"""The store's params column never holds a secret in clear, on every backend, whoever calls it:
a secret parameter is a marker, a rota.Secret a reference to its variable."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from rota import Secret
from rota.engine.runner import FlowRef, create_run
from rota.model.secrets import unstored_params
from rota.store.base import NewTask
from rota.store.sql import SqlStore, open_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOKEN = "tok-hunter2-XYZ"
PARAMS = {
    "api_token": TOKEN,
    "epochs": 3,
    "db": {"host": "db.local", "password": "pw-s3cr3t-ABC"},
    "key": Secret("MY_KEY"),
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/rota.db"
    else:
        url = request.getfixturevalue("postgres_url")
    with open_store(url) as s:
        yield s


def raw_params(store: SqlStore, run_id: str) -> str:
    with store.engine.connect() as conn:
        value = conn.execute(
            text("SELECT CAST(params AS TEXT) FROM runs WHERE run_id = :r"), {"r": run_id}
        ).scalar_one()
    return str(value)


def test_create_run_stores_markers_and_references_only(store: SqlStore) -> None:
    record = store.create_run("r1", "f", PARAMS, [NewTask("t", "python", "h")], T0)
    raw = raw_params(store, "r1")
    assert TOKEN not in raw and "pw-s3cr3t-ABC" not in raw
    assert "MY_KEY" in raw and "db.local" in raw
    assert record.params == store.get_run("r1").params
    assert store.get_run("r1").params["epochs"] == 3
    assert unstored_params(store.get_run("r1").params) == {"api_token": "given", "db": "given"}


def test_the_engine_marks_a_secret_that_kept_its_default(store: SqlStore) -> None:
    run = create_run(
        store, FlowRef("f"), [NewTask("t", "python", "h")], PARAMS, T0,
        defaults={"api_token": TOKEN, "epochs": 1},
    )  # fmt: skip
    assert TOKEN not in raw_params(store, run.run_id)
    assert unstored_params(store.get_run(run.run_id).params) == {
        "api_token": "default",
        "db": "given",
    }
