"""A template naming a parameter or variable that does not exist is refused when the flow loads,
with one line and exit code 2, not found when the task runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from clihelp import RotaCli

from rota import FileSensor, Flow, ShellTask, flow
from rota.errors import DefinitionError

WriteFlow = Callable[[str, str], Path]

SHELL = """
from rota import Flow, ShellTask

with Flow("etl", params={"source": "a.csv", "day": "x"}) as etl:
    ShellTask("fetch", "cat {{ params.sourse }} > /dev/null")
"""


def test_a_misspelt_param_is_one_line_exit_2_and_nothing_runs(
    rota: RotaCli, write_flow: WriteFlow, home: Path
) -> None:
    path = write_flow("etl.py", SHELL)
    result = rota("run", str(path))
    assert result.code == 2, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "etl.py" in lines[0]
    assert (
        "{{ params.sourse }} names no parameter of flow 'etl' (parameters: day, source)" in lines[0]
    )
    assert "Traceback" not in result.err
    assert not (home / "logs").exists() or not any((home / "logs").rglob("*.log"))


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("echo {{ params.nope }}", "{{ params.nope }} names no parameter"),
        ("echo {{ params['nope'] }}", "{{ params.nope }} names no parameter"),
        ("echo {{ dss }}", "{{ dss }} is not a template variable"),
        ("echo {{ nope.x }}", "{{ nope }} is not a template variable"),
    ],
)
def test_unknown_names_fail_the_build(template: str, problem: str) -> None:
    with Flow("f", params={"x": 1}) as f:
        ShellTask("t", template)
    with pytest.raises(DefinitionError) as info:
        f.build()
    assert problem in str(info.value)
    assert str(info.value).startswith("task 't': template error: ")


@pytest.mark.parametrize(
    "template",
    [
        "echo {{ params.x }} {{ params['x'] }} {{ ds }} {{ run_id }} {{ try_number }}",
        "echo {{ params.get('y', 1) }} {% for v in [params.x] %}{{ v }} {% endfor %}",
        "echo {% set params = {'z': 1} %}{{ params.z }}",
    ],
)
def test_known_names_pass(template: str) -> None:
    with Flow("f", params={"x": 1}) as f:
        ShellTask("t", template, env={"X": "{{ params.x }}"})
    assert "t" in f.build().tasks


def test_env_values_and_sensor_paths_are_checked_too() -> None:
    with Flow("f", params={"x": 1}) as f:
        ShellTask("t", "true", env={"X": "{{ params.y }}"})
    with pytest.raises(DefinitionError, match=r"^task 't' env 'X': .*params\.y"):
        f.build()
    with Flow("g", params={"x": 1}) as g:
        FileSensor("w", path="/data/{{ params.nope }}")
    with pytest.raises(DefinitionError, match=r"^task 'w' path: .*params\.nope"):
        g.build()


def test_taskflow_parameters_come_from_the_signature() -> None:
    @flow
    def daily(region: str = "eu") -> None:
        ShellTask("ok", "echo {{ params.region }}")
        ShellTask("bad", "echo {{ params.zone }}")

    with pytest.raises(
        DefinitionError, match=r"params\.zone }} names no parameter of flow 'daily'"
    ):
        daily.build()
