"""The critical path, the layered layout, pages of runs by cursor, and /metrics' figures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rota.model.critical import Span, critical_path
from rota.model.states import RunState
from rota.store.base import NewTask, RunChange
from rota.store.browse import BadCursor, RunQuery, cursor_of
from rota.store.sql import SqlStore, open_store
from rota.web.layout import layout
from rota.web.metrics import BUCKETS, render

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_critical_path_follows_the_upstream_that_released_each_task() -> None:
    #   a -> slow -> d ; a -> fast -> d ; e hangs off a and ends early
    up = {"a": (), "slow": ("a",), "fast": ("a",), "d": ("slow", "fast"), "e": ("a",)}
    spans = {
        "a": Span(at(0), at(1)),
        "slow": Span(at(1), at(9)),
        "fast": Span(at(1), at(2)),
        "d": Span(at(9), at(10)),
        "e": Span(at(1), at(3)),
    }
    assert critical_path(spans, up) == ["a", "slow", "d"]
    spans["fast"] = Span(at(1), at(9.5))  # now fast released d
    spans["d"] = Span(at(9.5), at(10))
    assert critical_path(spans, up) == ["a", "fast", "d"]


def test_the_critical_path_stops_where_no_upstream_had_ended_and_skips_unended() -> None:
    up = {"a": (), "b": ("a",), "c": ("b",)}
    # c started (an `always` rule) before b ended: b did not release it
    spans = {"a": Span(at(0), at(1)), "b": Span(at(1), at(5)), "c": Span(at(0.5), at(6))}
    assert critical_path(spans, up) == ["c"]
    assert critical_path({"a": Span(at(0), None)}, {"a": ()}) == []


def test_the_layout_puts_each_task_right_of_its_upstreams_without_overlaps() -> None:
    graph = [("a", ()), ("b", ("a",)), ("c", ("a",)), ("d", ("b", "c")), ("e", ())]
    drawn = layout(graph)
    where = {n.id: n for n in drawn.nodes}
    for tid, ups in graph:
        for up in ups:
            assert where[up].layer < where[tid].layer
    assert len({(n.x, n.y) for n in drawn.nodes}) == len(graph)
    assert {(e.source, e.target) for e in drawn.edges} == {
        ("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"),
    }  # fmt: skip
    big = [(f"t{i}", (f"t{i - 1}",) if i else ()) for i in range(10_000)]
    assert max(n.layer for n in layout(big).nodes) == 9_999


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    url = f"sqlite:///{tmp_path / 'rota.db'}"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    s = open_store(url)
    yield s
    s.close()


def test_pages_of_runs_follow_the_cursor_with_filters(store: SqlStore) -> None:
    for i in range(23):
        flow = "even" if i % 2 == 0 else "odd"
        store.create_run(f"r{i:02d}", flow, {}, [NewTask("t", "python", "h")], at(i))
    store.apply([], [RunChange("r22", RunState.QUEUED, RunState.FAILED, at(30))], at=at(30))
    seen: list[str] = []
    cursor = None
    while True:
        page = store.page_runs(RunQuery(after=cursor, limit=5))
        seen += [r.run_id for r in page]
        if len(page) < 5:
            break
        cursor = cursor_of(page[-1])
    assert seen == [f"r{i:02d}" for i in range(22, -1, -1)]
    odd = store.page_runs(RunQuery(flow="odd", since=at(5), until=at(12), limit=50))
    assert [r.run_id for r in odd] == ["r11", "r09", "r07", "r05"]
    failed = store.page_runs(RunQuery(states=(RunState.FAILED,), limit=50))
    assert [r.run_id for r in failed] == ["r22"]
    with pytest.raises(BadCursor):
        store.page_runs(RunQuery(after="not-a-cursor"))
    assert store.run_graph("r00") == [("t", ())]
    assert store.recent_runs(["odd"], 2) == {"odd": [("r21", "queued"), ("r19", "queued")]}


def test_metrics_count_runs_attempts_and_durations(store: SqlStore) -> None:
    from rota.model.states import TaskState
    from rota.store.base import Change

    store.create_run("m1", "f", {}, [NewTask("a", "python", "h"), NewTask("b", "python", "h")],
                     at(0))  # fmt: skip
    a, b = store.attempts("m1")
    store.apply([Change(a.id, TaskState.SCHEDULED, TaskState.QUEUED, {})], at=at(1))
    store.apply([Change(a.id, TaskState.QUEUED, TaskState.RUNNING, {"started_at": at(1)})],
                at=at(1))  # fmt: skip
    store.apply([Change(a.id, TaskState.RUNNING, TaskState.SUCCESS, {"finished_at": at(3)})],
                at=at(3))  # fmt: skip
    store.apply([Change(b.id, TaskState.SCHEDULED, TaskState.QUEUED, {})], at=at(3))
    text = render(store.counts(BUCKETS), at(10))
    assert 'rota_runs{state="queued"} 1' in text
    assert 'rota_task_attempts{state="success"} 1' in text
    assert 'rota_task_attempts{state="queued"} 1' in text
    assert 'rota_task_duration_seconds_bucket{le="1"} 0' in text
    assert 'rota_task_duration_seconds_bucket{le="5"} 1' in text
    assert "rota_task_duration_seconds_count 1" in text
    assert "rota_task_duration_seconds_sum 2.000" in text
    assert "rota_queue_depth 1" in text
