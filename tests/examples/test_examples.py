"""Every example in examples/ runs as its docstring says, with `rota` commands in a subprocess.

Each test copies nothing: it runs the file in the repository, from a folder of its own, with a
Rota home of its own, and checks the run's final task states and a fact about what it produced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rota.engine.result import RunResult
from rota.store.sql import open_store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


class Done:
    """A finished command: its exit code and output."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr

    def json(self) -> Any:
        return json.loads(self.out)


Rota = Callable[..., Done]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "rota-home"


@pytest.fixture
def rota(home: Path, tmp_path: Path) -> Rota:
    """``rota ARGS`` as a user types it, in the test's folder, with its own home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTA_")}
    env |= {"ROTA_HOME": str(home), "ROTA_WORKERS": "2", "ROTA_EXECUTOR": "threads"}

    def run(*args: str, exe: str = "rota", extra: dict[str, str] | None = None) -> Done:
        cmd = [sys.executable, "-m", "rota"] if exe == "rota" else [sys.executable]
        proc = subprocess.run(
            [*cmd, *args],
            cwd=tmp_path,
            env=env | (extra or {}),
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        return Done(proc)

    return run


def _result(home: Path, run_id: str) -> RunResult:
    with open_store(f"sqlite:///{home}/rota.db") as store:
        return RunResult.read(store, run_id, str(home / "artifacts"))


def _states(done: Done) -> dict[str, str]:
    return {tid: t["state"] for tid, t in done.json()["tasks"].items()}


def test_ml_pipeline_resumes_training_from_its_checkpoint_and_takes_one_branch(
    rota: Rota, home: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    args = ["-p", "epochs=3", "-p", "fail_at_epoch=2", "-p", f"model_dir={models}"]
    first = rota("run", str(EXAMPLES / "ml_pipeline.py"), *args, "--json")
    assert first.code == 0, first.err
    states = _states(first)
    result = _result(home, first.json()["run_id"])
    tries = result.attempts_of("train")
    assert [a.state.value for a in tries] == ["up_for_retry", "success"]
    log = rota("tasks", "logs", result.run_id, "train", "--attempt", "2")
    assert "resuming from the checkpoint of epoch 2" in log.out
    assert "epoch 3/3" in log.out and "epoch 1/3" not in log.out

    accuracy = result.output("evaluate")["accuracy"]
    chosen = "deploy" if accuracy >= 0.9 else "notify"
    other = {"deploy": "notify", "notify": "deploy"}[chosen]
    assert (states[chosen], states[other]) == ("success", "skipped")
    if chosen == "deploy":
        assert (models / "digits" / result.run_id / "model.pkl").is_file()

    again = rota("run", str(EXAMPLES / "ml_pipeline.py"), *args, "--json")
    assert again.code == 0, again.err
    assert {t: s for t, s in _states(again).items() if t in ("extract", "train", "evaluate")} == (
        dict.fromkeys(["extract", "train", "evaluate"], "cached")
    )


def test_nightly_batch_backfill_waits_for_each_drop_and_reports_each_day(
    rota: Rota, home: Path, tmp_path: Path
) -> None:
    made = rota(str(EXAMPLES / "nightly_batch.py"), "2026-01-01", "2026-01-02", exe="python")
    assert made.code == 0, made.err
    flow = str(EXAMPLES / "nightly_batch.py")
    done = rota("backfill", flow, "--start", "2026-01-01", "--end", "2026-01-02")
    assert done.code == 0, done.out + done.err

    runs = rota("runs", "list", "--flow", "nightly_batch", "--json").json()
    assert sorted((r["logical_date"][:10], r["state"]) for r in runs) == [
        ("2026-01-01", "success"),
        ("2026-01-02", "success"),
    ]
    for run in runs:
        result = _result(home, run["run_id"])
        assert result.tasks["wait_for_drop"].state.value == "success"
        day = run["logical_date"][:10]
        report = json.loads((tmp_path / "outbox" / f"{day}.json").read_text())
        # the sample drop for day d has amounts (10d + i) / 4 for regions N, S, E, W, N
        d = int(day[-2:])
        want = {"E": (10 * d + 2) / 4, "N": (10 * d + 0 + 10 * d + 4) / 4}
        assert report["day"] == day
        assert report["totals"]["E"] == want["E"] and report["totals"]["N"] == want["N"]
        assert result.output("report") == str(Path("outbox") / f"{day}.json")


def test_hyperparameter_search_maps_the_grid_and_keeps_the_best_model(
    rota: Rota, home: Path
) -> None:
    done = rota("run", str(EXAMPLES / "hyperparameter_search.py"), "-p", "steps=3", "--json")
    assert done.code == 0, done.err
    result = _result(home, done.json()["run_id"])
    fits = result.output("fit")
    assert [f["c"] for f in fits] == [0.001, 0.316228, 100.0]
    best = max(fits, key=lambda r: (r["val_accuracy"], -r["c"]))
    final = result.output("final_score")
    assert (final["c"], final["val_accuracy"]) == (best["c"], best["val_accuracy"])
    assert 0.0 < final["test_accuracy"] <= 1.0

    again = rota("run", str(EXAMPLES / "hyperparameter_search.py"), "-p", "steps=3", "--json")
    assert again.code == 0, again.err
    instances = _result(home, again.json()["run_id"]).attempts_of
    # the same grid: every instance's code and inputs are unchanged, its fit is reused
    assert [instances("fit", i)[-1].state.value for i in range(3)] == ["cached"] * 3
    assert _states(again)["split"] == "cached"


def test_shell_and_python_pipeline_passes_the_shell_output_to_python(
    rota: Rota, home: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    done = rota(
        "run",
        str(EXAMPLES / "shell_and_python.py"),
        "--json",
        extra={"ROTA_EXAMPLE_DIR": str(work)},
    )
    assert done.code == 0, done.err
    assert set(_states(done).values()) == {"success"}
    result = _result(home, done.json()["run_id"])
    summary = result.output("summarize")
    assert summary["count"] == 100
    assert summary["total"] == sum(i * i for i in range(1, 101))
    assert (work / "squares.csv").read_text().splitlines()[:2] == ["i,square", "1,1"]


def test_every_example_has_a_test_here() -> None:
    """A new file in examples/ is run by this module, or this fails."""
    source = Path(__file__).read_text()
    untested = [p.name for p in EXAMPLES.glob("*.py") if f'EXAMPLES / "{p.name}"' not in source]
    assert not untested, f"examples no test runs: {untested}"
