"""rota.testing: a flow run in-process against a store of its own in one line, the pytest
fixture (as a user enables it, in a real pytest run of the README's test), and one task run
alone with given upstream values and a made-up ctx."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import apiflows
import pytest

from rota.errors import NotFound, RunFailed, UserError
from rota.model.states import RunState
from rota.testing import RotaSandbox, run_flow, run_task

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(heading: str, contains: str) -> str:
    """The README's first ```python block under *heading* that contains *contains*."""
    section = README.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    for block in re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL):
        if contains in block:
            return str(block)
    raise AssertionError(f"no python block with {contains!r} under {heading!r}")


def test_the_readme_pytest_test_runs_a_flow_in_five_lines(tmp_path: Path) -> None:
    flow_src = readme_block("Writing a flow", "def pipeline")
    conftest = readme_block("Runs from Python, and testing them", "pytest_plugins")
    user_test = readme_block("Runs from Python, and testing them", "def test_")
    assert len([line for line in user_test.splitlines() if line.strip()]) <= 5
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "__init__.py").write_text("")
    (tmp_path / "flows" / "pipeline.py").write_text(flow_src)
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_pipeline.py").write_text(user_test)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTA_", "PYTEST_"))}
    env["ROTA_HOME"] = str(tmp_path / "not-this-home")  # the fixture's home is used instead
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_pipeline.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert not (tmp_path / "not-this-home").exists()


def test_run_flow_in_one_line_against_a_store_of_its_own(tmp_path: Path) -> None:
    assert run_flow(apiflows.ml_pipeline, tmp_path, n=3).output("extract") == [0, 1, 2]
    assert (tmp_path / "rota.db").is_file()
    result = run_flow(apiflows.ops)  # a temporary home of its own
    assert result.state is RunState.SUCCESS and result.output("first") == 42


def test_run_flow_raises_with_the_failed_task_and_its_error(tmp_path: Path) -> None:
    marker = tmp_path / "boom"
    marker.touch()
    with pytest.raises(RunFailed, match="maybe_fail: ValueError: the marker boom is there"):
        run_flow(apiflows.flaky, tmp_path / "home", marker=str(marker))
    kept = run_flow(apiflows.flaky, tmp_path / "home", marker=str(marker), raise_on_failure=False)
    assert kept.state is RunState.FAILED


def test_the_fixture_home_is_used_by_a_plain_run(rota_home: RotaSandbox) -> None:
    result = apiflows.ml_pipeline.run(n=2, executor="inprocess")  # ROTA_* point at the sandbox
    with rota_home.store() as store:
        assert [r.run_id for r in store.list_runs()] == [result.run_id]
    second = rota_home.run(apiflows.flaky, marker="")
    assert second.output("after") == "fine!"


def test_run_task_with_given_upstream_values(tmp_path: Path) -> None:
    model = run_task(
        apiflows.ml_pipeline, "fit", inputs={"extract": [1, 2]}, params={"threshold": 2.0}
    )
    assert model.weights == [2.0, 4.0]
    assert run_task(apiflows.ml_pipeline, "square[2]", inputs={"extract": [5, 6, 7]}) == 49
    assert run_task(apiflows.ml_pipeline, "square", index=0, inputs={"extract": [5]}) == 25
    with pytest.raises(UserError, match="reads the output of 'extract'"):
        run_task(apiflows.ml_pipeline, "fit")
    with pytest.raises(UserError, match=r"is mapped: name one instance, square\[N\]"):
        run_task(apiflows.ml_pipeline, "square", inputs={"extract": [1]})
    with pytest.raises(UserError, match="no instance 3"):
        run_task(apiflows.ml_pipeline, "square@3", inputs={"extract": [1]})
    with pytest.raises(NotFound, match="no task 'nope'"):
        run_task(apiflows.ml_pipeline, "nope")
    with pytest.raises(ValueError, match="the marker"):  # what the task raises, the test sees
        marker = tmp_path / "m"
        marker.touch()
        run_task(apiflows.flaky, "maybe_fail", params={"marker": str(marker)})


def test_run_task_with_a_made_up_ctx(tmp_path: Path) -> None:
    when = datetime(2026, 3, 1, tzinfo=UTC)
    seen = run_task(
        apiflows.daily, "context_probe", logical_date=when, params={"label": "x"}, run_id="r1"
    )
    assert seen == {"run_id": "r1", "logical_date": when.isoformat(), "params": {"label": "x"}}
    folder = tmp_path / "checkpoints"
    assert run_task(apiflows.resumable, "counting", checkpoint_dir=folder) == 1
    assert run_task(apiflows.resumable, "counting", checkpoint_dir=folder) == 2
    assert (folder / "counting").is_file()
    assert run_task(apiflows.resumable, "counting") == 1  # a fresh folder each time by default
