"""Content caching end to end, counting real executions with an effect ledger."""

from __future__ import annotations

import shutil
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
    assert {t["state"] for t in second.json()["tasks"].values()} == {"cached"}

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
        "deploy": "success",
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
