"""Data between tasks end to end: Parquet and .npy outputs, S3 artifacts, broken artifacts."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from clihelp import RotaCli

from fixtures_s3 import s3_bucket, s3_server  # noqa: F401

BIG = """
import os
from pathlib import Path

import numpy as np
import pandas as pd

from rota import flow, task

LEDGER = Path(os.environ["LEDGER"])


def note(step: str) -> None:
    with LEDGER.open("a") as fh:
        fh.write(step + "\\n")


@task
def frame() -> pd.DataFrame:
    note("frame")
    n = 1_000_000
    return pd.DataFrame({"id": np.arange(n), "x": np.linspace(0.0, 1.0, n), "k": np.arange(n) % 7})


@task
def array() -> np.ndarray:
    note("array")
    return np.arange(1_000_000, dtype=np.float64)


@task
def combine(df: pd.DataFrame, arr: np.ndarray) -> dict:
    note("combine")
    if Path(os.environ["LEDGER"] + ".fail").exists():
        raise RuntimeError("forced failure")
    assert len(df) == len(arr) == 1_000_000
    return {"rows": len(df), "total": float(df["x"].sum() + arr.sum())}


@flow
def big():
    combine(frame(), array())
"""


def _big(write_flow: Callable[[str, str], Path], tmp_path: Path) -> tuple[Path, Path]:
    return write_flow("big.py", BIG), tmp_path / "ledger"


def _ledger(path: Path) -> list[str]:
    steps = path.read_text().split() if path.exists() else []
    path.unlink(missing_ok=True)
    return steps


def _largest_value_in_db(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        largest = 0
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            cols = [r[1] for r in conn.execute(f"pragma table_info({table})")]
            for col in cols:
                query = f"select max(length(cast({col} as blob))) from {table}"
                row = conn.execute(query).fetchone()
                largest = max(largest, int(row[0] or 0))
    return largest


def test_frames_and_arrays_travel_as_parquet_and_npy_not_through_the_database(
    rota: RotaCli, home: Path, tmp_path: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path, ledger = _big(write_flow, tmp_path)
    result = rota("run", str(path), "--executor", "local", "--json", env={"LEDGER": str(ledger)})
    assert result.code == 0, result.err
    run_id = result.json()["run_id"]
    stored = sorted(p.name for p in (home / "artifacts" / run_id).iterdir())
    assert stored == ["array.npy", "frame.parquet"]  # combine's small result is kept in its row
    assert (home / "artifacts" / run_id / "array.npy").stat().st_size > 8_000_000
    assert _largest_value_in_db(home / "rota.db") < 1_000_000
    shown = rota("outputs", "show", run_id, "frame")
    assert "parquet" in shown.out and "1000000" in shown.out.replace(",", "")


def test_s3_artifacts_and_a_resume_that_reuses_them(
    rota: RotaCli,
    tmp_path: Path,
    write_flow: Callable[[str, str], Path],
    s3_server: str,  # noqa: F811
    s3_bucket: str,  # noqa: F811
) -> None:
    import s3fs

    path, ledger = _big(write_flow, tmp_path)
    Path(f"{ledger}.fail").touch()
    env = {"LEDGER": str(ledger), "ROTA_ARTIFACTS": f"{s3_bucket}/outputs"}
    failed = rota("run", str(path), "--json", env=env)
    assert failed.code == 1
    run_id = failed.json()["run_id"]
    assert sorted(_ledger(ledger)) == ["array", "combine", "frame"]
    fs = s3fs.S3FileSystem(endpoint_url=s3_server)
    keys = sorted(k.rsplit("/", 1)[1] for k in fs.ls(f"{s3_bucket}/outputs/{run_id}"))
    assert keys == ["array.npy", "frame.parquet"]
    Path(f"{ledger}.fail").unlink()
    resumed = rota("resume", run_id, "--json", env=env)
    assert resumed.code == 0, resumed.err
    assert _ledger(ledger) == ["combine"], "the S3-stored outputs of frame and array were reused"
    assert resumed.json()["state"] == "success"


CHAIN = """
from rota import flow, task


@task
def produce() -> list[int]:
    return list(range(1000))


@task
def consume(xs: list[int]) -> int:
    return sum(xs)


@flow
def chain():
    consume(produce())
"""


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_broken_artifact_names_itself_and_its_producer_and_clear_repairs_it(
    damage: str, rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("chain.py", CHAIN)
    # outputs in files (none kept in their rows): the file is what gets damaged
    run_id = rota("run", str(path), "--json", env={"ROTA_INLINE_OUTPUT_MAX": "0"}).json()["run_id"]
    artifact = home / "artifacts" / run_id / "produce.json"
    if damage == "deleted":
        artifact.unlink()
    else:
        artifact.write_bytes(artifact.read_bytes()[:100])
    assert rota("clear", run_id, "--task", "consume").code == 0
    broken = rota("resume", run_id, "--json")
    assert broken.code == 1
    error = rota("runs", "show", run_id).out
    assert "produce" in error and "produce.json" in error
    assert rota("clear", run_id, "--task", "produce", "--downstream").code == 0
    repaired = rota("resume", run_id, "--json")
    assert repaired.code == 0, repaired.err
    assert repaired.json()["tasks"]["consume"]["state"] == "success"
