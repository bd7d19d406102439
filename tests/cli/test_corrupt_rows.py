"""One corrupt run row (corrupted through real SQL in the real SQLite file) never hides the others:
``rota runs list`` lists them, names the bad row on stderr and exits 1; ``rota runs show BAD`` is
one line."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clihelp import RotaCli

from rota.store.base import NewTask
from rota.store.sql import SqlStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WIDE = {"COLUMNS": "250"}  # the table shows whole run ids


def _make_runs(store: SqlStore) -> list[str]:
    ids = [f"run-{i}" for i in range(5)]
    for i, run_id in enumerate(ids):
        at = T0 + timedelta(minutes=i)
        store.create_run(run_id, "f", {"i": i}, [NewTask("t", "python", "h")], at)
    return ids


def _corrupt(home: Path, ids: list[str]) -> None:
    with sqlite3.connect(home / "rota.db") as db:
        db.execute("UPDATE runs SET state = 'on fire' WHERE run_id = ?", (ids[1],))
        db.execute("UPDATE runs SET params = '{garbage' WHERE run_id = ?", (ids[2],))
        db.execute("UPDATE runs SET params = 'null' WHERE run_id = ?", (ids[3],))


def test_runs_list_lists_the_others_and_names_each_bad_row(
    rota: RotaCli, store: SqlStore, home: Path
) -> None:
    ids = _make_runs(store)
    _corrupt(home, ids)
    table = rota("runs", "list", env=WIDE)
    as_json = rota("runs", "list", "--json")
    for result in (table, as_json):
        assert result.code == 1
        assert "Traceback" not in result.err
        assert result.err.splitlines() == [
            f"rota: run {ids[3]}: unreadable row: params: NoneType where a JSON object is expected",
            f"rota: run {ids[2]}: unreadable row: params: Expecting property name enclosed in "
            "double quotes: line 1 column 2 (char 1)",
            f"rota: run {ids[1]}: unreadable row: state: 'on fire' is not one of queued, running, "
            "success, failed, interrupted",
        ]
    assert [r["run_id"] for r in as_json.json()] == [ids[4], ids[0]]
    words = [line.split() for line in table.out.splitlines()]
    shown = [w[0] for w in words if w and w[0].startswith("run-")]
    assert shown == [ids[4], ids[0]]


def test_runs_show_of_a_bad_row_is_one_line_and_the_good_ones_still_show(
    rota: RotaCli, store: SqlStore, home: Path
) -> None:
    ids = _make_runs(store)
    _corrupt(home, ids)
    bad = rota("runs", "show", ids[1])
    assert bad.code == 1
    assert bad.out == ""
    assert bad.err == (
        f"rota: CorruptRow: run {ids[1]}: unreadable row: state: 'on fire' is not one of queued, "
        "running, success, failed, interrupted (set ROTA_DEBUG=1 for details)\n"
    )
    good = rota("runs", "show", ids[0], "--json")
    assert good.code == 0, good.err
    assert good.json()["run_id"] == ids[0]


def test_a_healthy_store_lists_with_exit_0_and_nothing_on_stderr(
    rota: RotaCli, store: SqlStore
) -> None:
    ids = _make_runs(store)
    listed = rota("runs", "list", "--json")
    assert (listed.code, listed.err) == (0, "")
    assert [r["run_id"] for r in listed.json()] == ids[::-1]
