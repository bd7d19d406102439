"""Datasets: versions, reads, lineage, and flows scheduled on datasets (model, store, runner)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rota import Dataset, flow, task
from rota.engine.runner import FlowRef, Runner
from rota.errors import DefinitionError
from rota.executors.threads import InProcessExecutor
from rota.model.datasets import coerce_datasets, is_due, waiting_for
from rota.model.schedule import SystemClock
from rota.store.sql import SqlStore, open_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
A, B = Dataset("s3://bucket/a.parquet"), Dataset("file:///data/b.csv")


def test_due_only_when_every_dataset_has_a_new_version() -> None:
    assert not is_due([A, B], {})
    assert not is_due([A, B], {A.uri: 2})
    assert waiting_for([A, B], {A.uri: 2}) == [B.uri]
    assert is_due([A, B], {A.uri: 1, B.uri: 3})
    assert not is_due([], {A.uri: 1}), "a flow scheduled on no dataset is never due this way"


def test_dataset_values_are_checked() -> None:
    assert coerce_datasets("outlets", "s3://x/y") == (Dataset("s3://x/y"),)
    assert coerce_datasets("outlets", [A, A, B.uri]) == (A, B)
    with pytest.raises(DefinitionError, match="without spaces"):
        Dataset("has space")
    with pytest.raises(DefinitionError, match="Dataset objects or URIs"):
        coerce_datasets("inlets", [42])  # type: ignore[list-item]
    with pytest.raises(DefinitionError, match="schedule must be a cron expression"):

        @flow(schedule=42)
        def nightly() -> None: ...


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    url = (
        f"sqlite:///{tmp_path / 'rota.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    with open_store(url) as s:
        yield s


def test_store_numbers_versions_and_counts_new_ones(store: SqlStore) -> None:
    v1 = store.add_dataset_version(A.uri, "h1", "r1", "make", T0)
    use = store.add_dataset_use(A.uri, "r2", "read", T0 + timedelta(minutes=1))
    v2 = store.add_dataset_version(A.uri, None, "r3", "make", T0 + timedelta(minutes=2))
    assert (v1.version, v2.version, use.version) == (1, 2, 1)
    assert [v.version for v in store.dataset_versions(A.uri)] == [1, 2]
    assert [(u.run_id, u.version) for u in store.dataset_uses(A.uri)] == [("r2", 1)]
    assert store.new_dataset_versions([A.uri, B.uri], None) == {A.uri: 2, B.uri: 0}
    assert store.new_dataset_versions([A.uri], T0 + timedelta(seconds=30)) == {A.uri: 1}
    store.add_dataset_version(B.uri, "hb", "r4", "make_b", T0 + timedelta(minutes=3))
    since_first = store.new_dataset_versions([A.uri, B.uri], T0)
    assert is_due([A, B], since_first)
    assert not is_due([A, B], store.new_dataset_versions([A.uri, B.uri], T0 + timedelta(minutes=2)))


def test_runner_records_versions_with_content_hash_and_reads(
    store: SqlStore, tmp_path: Path
) -> None:
    target = tmp_path / "features.csv"
    produced = Dataset(str(target))
    elsewhere = Dataset("db://warehouse/table")

    @task(outlets=[produced, elsewhere])
    def make() -> None:
        target.write_text("a,b\n1,2\n")

    @task(inlets=[produced])
    def read() -> int:
        return len(target.read_text())

    @flow(schedule=[produced])
    def pipeline() -> None:
        read() << make()

    ex = InProcessExecutor()
    try:
        summary = Runner(store, ex, home=tmp_path, clock=SystemClock()).run(
            pipeline.build(), FlowRef("pipeline")
        )
    finally:
        ex.close()
    (version,) = store.dataset_versions(produced.uri)
    assert version.content_hash == hashlib.blake2b(target.read_bytes(), digest_size=16).hexdigest()
    assert (version.run_id, version.task_id) == (summary.run_id, "make")
    (other,) = store.dataset_versions(elsewhere.uri)
    assert other.content_hash is None, "an unreadable URI gets a version without a hash"
    (use,) = store.dataset_uses(produced.uri)
    assert (use.run_id, use.task_id, use.version) == (summary.run_id, "read", 1)
    assert pipeline.schedule == (produced,)
