"""Small outputs are kept in the attempt's row, committed with the success: no file per output.

A downstream in another process reads them, a resume reuses them, a cache hit copies them into its
own row, and an output past the limit (or any output with the limit at 0) is still a file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from rota import flow, task
from rota.artifacts.inline import is_inline
from rota.engine.mapping import MAP_SOURCE_INLINE_MAX
from rota.engine.report import RunSummary
from rota.engine.runner import FlowRef, Runner, RunnerOptions
from rota.executors.pool import LocalPoolExecutor
from rota.model.dag import Dag
from rota.model.schedule import SystemClock
from rota.model.states import RunState, TaskState
from rota.store.base import Store
from rota.store.sql import open_store
from rota.testing import output_of


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (
        f"sqlite:///{tmp_path / 'rota.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    s = open_store(url)
    yield s
    s.close()


def _runner(store: Store, tmp_path: Path, ex: LocalPoolExecutor, **opts: object) -> Runner:
    options = replace(RunnerOptions(), **opts)  # type: ignore[arg-type]
    return Runner(store, ex, home=tmp_path, clock=SystemClock(), options=options)


def _run(store: Store, dag: Dag, tmp_path: Path, **opts: object) -> RunSummary:
    ex = LocalPoolExecutor(2, str(tmp_path / "logs"))
    try:
        return _runner(store, tmp_path, ex, **opts).run(dag, FlowRef(dag.name))
    finally:
        ex.close()


def _files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "artifacts"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@task
def small(i: int) -> int:
    return i * 10


@task
def big() -> list[int]:
    return list(range(100_000))


@task
def gather(xs: list[int], ys: list[int]) -> int:
    return sum(xs) + len(ys)


@flow
def mixed(n: int = 6) -> None:
    gather([small(i) for i in range(n)], big())


def test_small_outputs_live_in_their_rows_and_a_big_one_in_a_file(
    store: Store, tmp_path: Path
) -> None:
    summary = _run(store, mixed.build({"n": 6}), tmp_path)
    assert summary.state is RunState.SUCCESS
    assert output_of(summary, "gather") == 10 * sum(range(6)) + 100_000
    rows = {t: s.latest for t, s in summary.tasks.items()}
    smalls = [r for t, r in rows.items() if t.startswith("small")]
    assert len(smalls) == 6
    for rec in [*smalls, rows["gather"]]:
        assert rec.output_path is not None and is_inline(rec.output_path), rec.output_path
        assert rec.output_inline is not None and len(rec.output_inline) == rec.output_size
    assert rows["big"].output_inline is None and not is_inline(rows["big"].output_path)
    assert [p.name for p in _files(tmp_path)] == [Path(str(rows["big"].output_path)).name]


def test_with_the_limit_at_zero_every_output_is_a_file(store: Store, tmp_path: Path) -> None:
    summary = _run(store, mixed.build({"n": 3}), tmp_path, inline_output_max=0)
    assert summary.state is RunState.SUCCESS
    assert output_of(summary, "gather") == 30 + 100_000
    assert all(t.latest.output_inline is None for t in summary.tasks.values())
    assert len(_files(tmp_path)) == 5  # three smalls, big, gather


@task
def seed() -> dict[str, int]:
    return {"base": 7}


@task
def fragile(cfg: dict[str, int], marker: str) -> int:
    if Path(marker).exists():
        raise RuntimeError("marker present")
    return cfg["base"] + 1


@flow
def chain(marker: str = "") -> None:
    fragile(seed(), marker)


def test_resume_feeds_a_stored_inline_output_to_the_task_it_reruns(
    store: Store, tmp_path: Path
) -> None:
    marker = tmp_path / "fail"
    marker.touch()
    dag = chain.build({"marker": str(marker)})
    first = _run(store, dag, tmp_path)
    assert first.state is RunState.FAILED
    assert first.tasks["seed"].state is TaskState.SUCCESS
    marker.unlink()
    ex = LocalPoolExecutor(2, str(tmp_path / "logs"))
    try:
        resumed = _runner(store, tmp_path, ex).resume(first.run_id, dag, FlowRef(dag.name))
    finally:
        ex.close()
    assert resumed.state is RunState.SUCCESS
    assert output_of(resumed, "fragile") == 8
    seeds = [a for a in store.attempts(first.run_id) if a.task_id == "seed"]
    assert len(seeds) == 1, "the succeeded upstream is not run again"
    assert _files(tmp_path) == []


@task(cache=True)
def cached_seed() -> dict[str, int]:
    return {"base": 41}


@task
def plus_one(cfg: dict[str, int]) -> int:
    return cfg["base"] + 1


@flow
def cached_chain() -> None:
    plus_one(cached_seed())


def test_a_cache_hit_copies_the_inline_bytes_into_its_own_row(store: Store, tmp_path: Path) -> None:
    first = _run(store, cached_chain.build(), tmp_path)
    second = _run(store, cached_chain.build(), tmp_path)
    assert second.state is RunState.SUCCESS and output_of(second, "plus_one") == 42
    hit = second.tasks["cached_seed"].latest
    source = first.tasks["cached_seed"].latest
    assert hit.state is TaskState.CACHED and hit.cached_from == source.id
    assert hit.output_inline is not None and hit.output_inline == source.output_inline
    assert hit.output_hash == source.output_hash


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def doubled(x: int) -> int:
    return 2 * x


@task
def added(xs: list[int], ys: list[int]) -> int:
    return sum(xs) + sum(ys)


@flow
def mapped_over(n: int = 5) -> None:
    added(doubled.map(numbers(n, task_id="source")), numbers(n, task_id="plain"))


@pytest.mark.parametrize(("n", "source_inline"), [(5, True), (3000, False)])
def test_a_list_a_mapped_task_maps_over_is_a_file_past_a_few_kilobytes(
    store: Store, tmp_path: Path, n: int, source_inline: bool
) -> None:
    """Each instance's spec carries its input's reference, an inline one with the bytes: the
    list mapped over is kept inline only up to MAP_SOURCE_INLINE_MAX; the same list read by a
    plain task stays inline up to the usual limit."""
    summary = _run(store, mapped_over.build({"n": n}), tmp_path)
    assert summary.state is RunState.SUCCESS
    assert output_of(summary, "added") == 3 * sum(range(n))
    source, plain = summary.tasks["source"].latest, summary.tasks["plain"].latest
    assert source.output_size == plain.output_size
    assert plain.output_inline is not None
    assert (source.output_inline is not None) is source_inline
    assert is_inline(str(source.output_path)) is source_inline
    if not source_inline:
        assert source.output_size is not None and source.output_size > MAP_SOURCE_INLINE_MAX
        assert [p.name for p in _files(tmp_path)] == [Path(str(source.output_path)).name]
