"""Python tasks run in an image (``@task(image=...)``) beside a container task and a plain
Python task, through ``rota run`` with a real podman (skipped with the reason otherwise)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from clihelp import RotaCli

from fixtures_podman import (  # noqa: F401
    BUSYBOX_IMAGE,
    PYTHON_IMAGE,
    busybox_image,
    containers_with,
    python_image,
    rota_in_image,
)
from rota.store.sql import SqlStore
from storedvalues import stored_json

WriteFlow = Callable[[str, str], Path]

pytestmark = pytest.mark.usefixtures("python_image")

MIXED = """
import sys
from rota import ContainerTask, Flow, task

@task(image="{python}", container={options!r})
def count_words(text):
    print("counting in", sys.executable)
    return {{"words": len(text.split()), "python": sys.executable}}

@task
def report(summary):
    return f"{{summary['words']}} words counted by {{summary['python']}}"

with Flow("mixed") as mixed:
    made = ContainerTask("make", "{busybox}", ["sh", "-c", 'echo "one two three" > "$ROTA_OUTPUT"'])
    report(count_words(made))
"""


def _stored(home: Path, run_id: str, task: str) -> object:
    return stored_json(home, run_id, task)


def test_a_container_an_image_task_and_a_python_task_make_one_run(
    rota: RotaCli, write_flow: WriteFlow, home: Path
) -> None:
    source = MIXED.format(python=PYTHON_IMAGE, busybox=BUSYBOX_IMAGE, options=rota_in_image())
    result = rota("run", str(write_flow("mixed.py", source)), "--json")
    assert result.code == 0, result.err
    run_id = result.json()["run_id"]
    # the function ran with the image's Python, not this interpreter
    assert _stored(home, run_id, "count_words") == {"words": 3, "python": "/usr/bin/python3"}
    assert sys.executable != "/usr/bin/python3"
    assert _stored(home, run_id, "report") == "3 words counted by /usr/bin/python3"
    assert "counting in /usr/bin/python3" in rota("tasks", "logs", run_id, "count_words").out
    assert containers_with(f"rota.run={run_id}") == []


FAILING = """
from rota import Flow, task

@task(image="{python}", container={options!r})
def explode():
    raise ValueError("no data for today")

with Flow("failing") as failing:
    explode()
"""


def test_an_error_in_the_image_fails_the_task_with_its_type_and_message(
    rota: RotaCli, write_flow: WriteFlow, store: SqlStore
) -> None:
    source = FAILING.format(python=PYTHON_IMAGE, options=rota_in_image())
    result = rota("run", str(write_flow("failing.py", source)), "--json")
    assert result.code == 1, result.err
    run_id = result.json()["run_id"]
    (attempt,) = store.attempts(run_id)
    assert attempt.error_type == "ImageTaskFailed"
    assert attempt.error_message == "ValueError: no data for today"
    log = rota("tasks", "logs", run_id, "explode").out
    assert "Traceback" in log and "no data for today" in log


WITH_CTX = """
import os
from rota import Flow, task

@task(image="{python}", container={options!r})
def where(ctx):
    return [ctx.task_id, ctx.params["day"], os.environ["ROTA_PARAM_DAY"], ctx.try_number]

with Flow("ctxflow", params={{"day": "$(touch pwned)"}}) as ctxflow:
    where()
"""


def test_an_image_task_gets_its_context_and_the_run_s_parameters(
    rota: RotaCli, write_flow: WriteFlow, home: Path, tmp_path: Path
) -> None:
    source = WITH_CTX.format(python=PYTHON_IMAGE, options=rota_in_image())
    result = rota("run", str(write_flow("ctxflow.py", source)), "--json")
    assert result.code == 0, result.err
    run_id = result.json()["run_id"]
    value = "$(touch pwned)"
    assert _stored(home, run_id, "where") == ["where", value, value, 1]
    assert not (tmp_path / "pwned").exists()
