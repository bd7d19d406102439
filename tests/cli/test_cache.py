"""Content caching end to end, counting real executions with an effect ledger."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from clihelp import REPO, RotaCli


def _executed(ledger: Path) -> list[str]:
    steps = ledger.read_text().split() if ledger.exists() else []
    ledger.unlink(missing_ok=True)
    return steps


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def test_ml_example_caches_and_edits_invalidate_exactly_the_changed_cone(
    rota: RotaCli, tmp_path: Path
) -> None:
    flow = tmp_path / "ml_pipeline.py"
    shutil.copy(REPO / "examples" / "ml_pipeline.py", flow)
    ledger = tmp_path / "ledger"
    env = {"ROTA_EXAMPLE_LEDGER": str(ledger)}
    steps = ["extract", "clean", "features", "train", "evaluate", "deploy"]

    first = rota("run", str(flow), "--json", env=env)
    assert first.code == 0, first.err
    assert _executed(ledger) == steps

    second = rota("run", str(flow), "--json", env=env)
    assert second.code == 0, second.err
    assert _executed(ledger) == []
    # all cached but the branch, which chooses every run (and notify, which it did not choose)
    assert {tid: t["state"] for tid, t in second.json()["tasks"].items()} == (
        dict.fromkeys(steps, "cached") | {"deploy_or_notify": "success", "notify": "skipped"}
    )

    # a comment and blank lines are not a code change
    _edit(flow, '    note("evaluate")\n', '    # a comment\n\n    note("evaluate")\n')
    assert rota("run", str(flow), env=env).code == 0
    assert _executed(ledger) == []

    # only evaluate's code changes: evaluate and deploy (which reads its new output) run
    _edit(flow, 'metrics["n_test"] = float(', 'metrics["n_seen"] = metrics["n_test"] = float(')
    third = rota("run", str(flow), "--json", env=env)
    assert third.code == 0, third.err
    assert _executed(ledger) == ["evaluate", "deploy"]
    states = {tid: t["state"] for tid, t in third.json()["tasks"].items()}
    assert states == dict.fromkeys(steps[:4], "cached") | {
        "evaluate": "success",
        "deploy_or_notify": "success",
        "deploy": "success",
        "notify": "skipped",
    }
    explain = rota("cache", "explain", third.json()["run_id"], "evaluate")
    assert "code:ml_pipeline.evaluate" in explain.out
    assert (
        "miss: compared with run" in explain.out
        and "code:ml_pipeline.evaluate changed" in explain.out
    )

    # only a helper that evaluate calls changes: again exactly evaluate and deploy
    _edit(flow, "round(accuracy, 4)", "round(accuracy, 3)")
    fourth = rota("run", str(flow), "--json", env=env)
    assert fourth.code == 0, fourth.err
    assert _executed(ledger) == ["evaluate", "deploy"]
    explain = rota("cache", "explain", fourth.json()["run_id"], "evaluate")
    assert "code:ml_pipeline.prediction_metrics changed" in explain.out

    # --no-cache runs everything; cache clear forgets one task
    assert rota("run", str(flow), "--no-cache", env=env).code == 0
    assert _executed(ledger) == steps
    cleared = rota("cache", "clear", "--task", "train")
    assert cleared.code == 0 and "cleared" in cleared.out
    assert rota("run", str(flow), env=env).code == 0
    ran = _executed(ledger)
    # train runs again; what follows runs only if train's new output differs byte for byte
    assert ran[0] == "train" and set(ran) <= {"train", "evaluate", "deploy"}


def test_outputs_show_previews_a_stored_output(rota: RotaCli, tmp_path: Path) -> None:
    result = rota("run", str(REPO / "examples" / "ml_pipeline.py"), "-p", "epochs=2", "--json")
    assert result.code == 0, result.err
    shown = rota("outputs", "show", result.json()["run_id"], "evaluate")
    assert shown.code == 0, shown.err
    assert "accuracy" in shown.out and "blake2b" in shown.out
    missing = rota("outputs", "show", result.json()["run_id"], "nope")
    assert missing.code == 2 and "no task 'nope'" in missing.err


DATASETS = """
import os
from pathlib import Path
from rota import Dataset, flow, task

DATA = Path(os.environ["DATA_DIR"])
A = Dataset(str(DATA / "a.csv"))
B = Dataset(str(DATA / "b.csv"))


@task(outlets=[A])
def make_a() -> None:
    (DATA / "a.csv").write_text("x\\n")


@task(outlets=[B])
def make_b() -> None:
    (DATA / "b.csv").write_text("y\\n")


@task(inlets=[A, B])
def use_both() -> int:
    return 2


@flow
def produce_a():
    make_a()


@flow
def produce_b():
    make_b()


@flow(schedule=[A, B])
def consume():
    use_both()
"""


def test_lineage_and_dataset_schedules_from_the_cli(
    rota: RotaCli, tmp_path: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("datasets.py", DATASETS)
    env = {"DATA_DIR": str(tmp_path)}
    a_uri = str(tmp_path / "a.csv")
    assert rota("datasets", "due", f"{path}:consume", env=env).code == 1
    producer = rota("run", f"{path}:produce_a", "--json", env=env).json()["run_id"]
    waiting = rota("datasets", "due", f"{path}:consume", env=env)
    assert waiting.code == 1 and "waiting for" in waiting.out and "b.csv" in waiting.out
    assert rota("run", f"{path}:produce_b", env=env).code == 0
    assert rota("datasets", "due", f"{path}:consume", env=env).code == 0
    consumer = rota("run", f"{path}:consume", "--json", env=env).json()["run_id"]
    assert rota("datasets", "due", f"{path}:consume", env=env).code == 1
    lineage = rota("lineage", a_uri, "--json").json()
    assert [(p["run_id"], p["task_id"], p["version"]) for p in lineage["producers"]] == [
        (producer, "make_a", 1)
    ]
    assert [(c["run_id"], c["task_id"]) for c in lineage["consumers"]] == [(consumer, "use_both")]
    shown = rota("datasets", "show", a_uri, "--json").json()
    assert shown[0]["content_hash"] and shown[0]["version"] == 1
    assert rota("lineage", "s3://nothing/here").code == 2
