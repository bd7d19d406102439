"""``rota outputs show`` looks at stored outputs without running them: a pickle whose __reduce__
would touch a marker file does not touch it (unless --unsafe-load), a store row rewritten to call
a pickle "json" or a file replaced behind the store's back is an error, never an unpickling, and
classes defined in the flow file preview by name (and load with --unsafe-load)."""

from __future__ import annotations

import hashlib
import os
import pathlib
import pickle
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clihelp import Result

from rota.flowfile import module_name_for


class Touch:
    """Unpickling this creates *marker*."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


FLOW = """
import dataclasses, os, pathlib
import numpy as np
from rota import flow, task

MARKERS = pathlib.Path(os.environ.get("MARKERS", "."))


class Touch:
    def __init__(self, name):
        self.name = name

    def __reduce__(self):  # unpickling creates MARKERS/<name>
        return (pathlib.Path.touch, (MARKERS / self.name,))


@dataclasses.dataclass
class Point:
    x: int
    y: int


@task
def hostile():
    return Touch("hostile")


@task
def hostile_unsafe():
    return Touch("hostile_unsafe")


@task
def hostile_row():
    return Touch("hostile_row")


@task
def point():
    return Point(1, 2)


@task
def grid():
    return np.arange(12.0).reshape(3, 4)


@task
def grid_tampered():
    return np.arange(3.0)


@task
def note():
    return "done\\n\\x1b[2Jcleared?"


@task
def frame():
    import pandas as pd
    return pd.DataFrame({"a": range(10)})


@task
def model():
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression().fit(np.arange(20.0).reshape(10, 2), [0, 1] * 5)


@flow
def outputs():
    hostile(); hostile_unsafe(); hostile_row(); point(); grid(); grid_tampered(); note()
    frame(); model()
"""


@dataclass
class Stored:
    """One run of FLOW, shared by the tests of this module (each mutates only its own task)."""

    home: Path
    cwd: Path
    flow: Path
    markers: Path
    run_id: str
    inline: bool
    """Whether the outputs' bytes are kept in their rows (the default for small ones) or in
    files (ROTA_INLINE_OUTPUT_MAX=0): every test here runs against both."""

    def rota(self, *args: str) -> Result:
        env = {**os.environ, "ROTA_HOME": str(self.home), "MARKERS": str(self.markers)}
        env["ROTA_INLINE_OUTPUT_MAX"] = str(64 * 1024 if self.inline else 0)
        env.pop("ROTA_DATABASE_URL", None)
        proc = subprocess.run(
            [sys.executable, "-m", "rota", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.cwd,
            timeout=120,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def show(self, task: str, *more: str) -> Result:
        return self.rota("outputs", "show", self.run_id, task, *more)

    def row(self, task: str, **columns: str) -> None:
        """Rewrite *task*'s attempt row as someone with write access to the store could."""
        with sqlite3.connect(self.home / "rota.db") as db:
            for column, value in columns.items():
                db.execute(
                    f"UPDATE task_attempts SET {column} = ? WHERE run_id = ? AND task_id = ?",
                    (value, self.run_id, task),
                )

    def replace_bytes(self, task: str, data: bytes) -> None:
        """Replace *task*'s stored bytes behind the store: its file, or its row's bytes."""
        if not self.inline:
            self.uri(task).write_bytes(data)
            return
        with sqlite3.connect(self.home / "rota.db") as db:
            db.execute(
                "UPDATE task_attempts SET output_inline = ? WHERE run_id = ? AND task_id = ?",
                (data, self.run_id, task),
            )

    def uri(self, task: str) -> Path:
        with sqlite3.connect(self.home / "rota.db") as db:
            (uri,) = db.execute(
                "SELECT output_path FROM task_attempts WHERE run_id = ? AND task_id = ?",
                (self.run_id, task),
            ).fetchone()
        return Path(uri)


@pytest.fixture(scope="module", params=["file", "inline"])
def stored(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Stored:
    root = tmp_path_factory.mktemp("outputs")
    (root / "markers").mkdir()
    flow = root / "outputs_flow.py"
    flow.write_text(textwrap.dedent(FLOW))
    inline = request.param == "inline"
    made = Stored(root / "home", root, flow, root / "markers", "", inline)
    result = made.rota("run", str(flow), "--json")
    assert result.code == 0, result.err
    made.run_id = result.json()["run_id"]
    assert made.uri("hostile").as_posix().startswith("inline:") is inline
    assert list(made.markers.iterdir()) == []  # pickling ran no __reduce__ result
    return made


def test_a_pickle_that_runs_code_is_described_not_loaded(stored: Stored) -> None:
    shown = stored.show("hostile")
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0].startswith("hostile: pickle, ") and " bytes, blake2b " in lines[0]
    assert lines[1] == str(stored.uri("hostile"))
    assert lines[2] == "made by calling pathlib.Path.touch (pickle protocol 5)"
    assert lines[3] == "imports: pathlib.Path.touch, pathlib.PosixPath"
    assert lines[4].startswith("not loaded: loading a pickle runs the code it names")
    assert not (stored.markers / "hostile").exists()


def test_unsafe_load_loads_it_and_its_help_says_why(stored: Stored) -> None:
    helped = stored.rota("outputs", "show", "--help")
    assert "--unsafe-load" in helped.out
    assert "Unsafe: unpickling runs whatever code" in " ".join(helped.out.split())
    assert not (stored.markers / "hostile_unsafe").exists()
    loaded = stored.show("hostile_unsafe", "--unsafe-load")
    assert loaded.code == 0, loaded.err
    assert (stored.markers / "hostile_unsafe").exists()  # the check in the test above can fail


@pytest.mark.parametrize("claimed", ["json", "npy", "parquet"])
def test_a_row_claiming_a_safe_format_for_a_pickle_is_an_error(
    stored: Stored, claimed: str
) -> None:
    stored.row("hostile_row", output_serializer=claimed)
    for extra in ((), ("--unsafe-load",)):
        shown = stored.show("hostile_row", *extra)
        assert shown.code == 1
        assert "cannot be previewed" in shown.err and "first bytes are a pickle's" in shown.err
        assert len(shown.err.strip().splitlines()) == 1 and "Traceback" not in shown.err
    assert not (stored.markers / "hostile_row").exists()


def test_a_row_naming_another_unpickler_is_still_not_loaded(stored: Stored) -> None:
    stored.row("hostile_row", output_serializer="joblib")
    shown = stored.show("hostile_row")
    assert shown.code == 0, shown.err
    assert "made by calling pathlib.Path.touch (joblib, pickle protocol 5)" in shown.out
    stored.row("hostile_row", output_serializer="dill")
    unknown = stored.show("hostile_row")
    assert unknown.code == 1 and "serializer 'dill' is unknown" in unknown.err
    assert not (stored.markers / "hostile_row").exists()


def test_bytes_replaced_behind_the_store_are_refused_before_any_reader(stored: Stored) -> None:
    touch = pickle.dumps(Touch(stored.markers / "tampered"))
    stored.replace_bytes("grid_tampered", touch)
    for extra in ((), ("--unsafe-load",)):
        shown = stored.show("grid_tampered", *extra)
        assert shown.code == 1
        assert "is corrupt: content hash" in shown.err
    assert not (stored.markers / "tampered").exists()
    # the same bytes with the row's hash rewritten to match: still no fallback from npy
    stored.row("grid_tampered", output_hash=hashlib.blake2b(touch).hexdigest())
    shown = stored.show("grid_tampered")
    assert shown.code == 1 and "does not parse as npy" in shown.err
    assert not (stored.markers / "tampered").exists()


def test_a_flow_file_class_previews_by_name_and_loads_with_unsafe_load(stored: Stored) -> None:
    module = module_name_for(stored.flow)
    shown = stored.show("point")
    assert shown.code == 0, shown.err
    assert f"type {module}.Point (pickle protocol 5)" in shown.out.splitlines()
    loaded = stored.show("point", "--unsafe-load")
    assert loaded.code == 0, loaded.err  # before: ModuleNotFoundError: rota_flow_...
    assert loaded.out.splitlines()[-1] == "Point(x=1, y=2)"
    moved = stored.flow.with_suffix(".moved")
    stored.flow.rename(moved)
    try:
        gone = stored.show("point", "--unsafe-load")
    finally:
        moved.rename(stored.flow)
    assert gone.code == 2
    assert gone.err.strip() == (
        f"rota: error: the output's classes are defined in flow file {stored.flow}, now gone"
    )


def test_safe_formats_are_previewed(stored: Stored) -> None:
    grid = stored.show("grid")
    assert (
        grid.out.splitlines()[2] == "ndarray shape=(3, 4) dtype=float64 [0., 1., 2., 3., 4., 5., …]"
    )
    note = stored.show("note")
    assert note.out.splitlines()[2:] == ["str of 17 characters:", "done", "\\x1b[2Jcleared?"]
    assert "\x1b" not in note.out
    frame = stored.show("frame")
    assert frame.out.splitlines()[2] == "DataFrame 10 rows x 1 columns"
    model = stored.show("model")
    assert model.out.splitlines()[2].startswith(
        "type sklearn.linear_model._logistic.LogisticRegression (joblib, pickle protocol"
    )
