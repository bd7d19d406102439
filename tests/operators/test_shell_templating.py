"""Templated shell commands: rendered per attempt, every value one word of data in the environment.

The acceptance line: a params value like ``$(touch pwned); x`` in a templated ShellTask does not
execute. Proved here through ``ShellOp.execute`` and end to end through the ``rota`` CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rota import Flow, ShellTask
from rota.errors import DefinitionError, TemplateRenderError
from rota.operators.base import ExecContext
from rota.operators.shell import ShellOp

PWN = "$(touch pwned); x"
DAY = datetime(2024, 3, 9, 20, 30, tzinfo=UTC)


def context(params: dict[str, Any] | None = None) -> ExecContext:
    return ExecContext(
        "r-1",
        "daily",
        "say",
        1,
        {"msg": PWN, **(params or {})},
        logical_date=DAY,
        data_interval_start=DAY,
        data_interval_end=DAY,
    )


def pwned_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name == "pwned"]


# --- ShellOp.execute with a hand-built context ------------------------------------------------


def test_execute_renders_the_date_and_quotes_the_param(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    op = ShellOp('echo {{ ds }} "$ROTA_DS" {{ params.msg }}', cwd=str(tmp_path))
    assert op.execute(context(), (), {}) == f"2024-03-09 2024-03-09 {PWN}"
    assert pwned_files(tmp_path) == []
    err = capfd.readouterr().err
    assert f"""[rota] $ echo 2024-03-09 "$ROTA_DS" '{PWN}'""" in err


def test_env_values_are_rendered_as_they_are(tmp_path: Path) -> None:
    op = ShellOp(
        'printf %s "$GREETING"', {"GREETING": "{{ params.msg }} on {{ ds }}"}, str(tmp_path)
    )
    assert op.execute(context(), (), {}) == f"{PWN} on 2024-03-09"
    assert pwned_files(tmp_path) == []


def test_the_param_env_var_holds_the_value(tmp_path: Path) -> None:
    op = ShellOp('printf %s "$ROTA_PARAM_MSG|$ROTA_PARAM_N"', cwd=str(tmp_path))
    assert op.execute(context({"n": 3}), (), {}) == f"{PWN}|3"
    assert pwned_files(tmp_path) == []


def test_a_command_without_tags_runs_as_written(tmp_path: Path) -> None:
    op = ShellOp("a=(x y z); echo ${#a[@]} {x}", cwd=str(tmp_path))
    assert op.execute(context(), (), {}) == "3 {x}"


def test_a_render_error_fails_the_attempt_before_anything_runs(tmp_path: Path) -> None:
    op = ShellOp("touch ran; echo {{ params.nope }}", cwd=str(tmp_path))
    with pytest.raises(TemplateRenderError, match=r"^task 'say': template error: .*nope"):
        op.execute(context(), (), {})
    assert list(tmp_path.iterdir()) == []


def test_describe_and_code_hash_use_the_unrendered_command() -> None:
    op = ShellOp("echo {{ ds }}")
    assert op.describe() == "echo {{ ds }}"
    assert op.code_hash() == ShellOp("echo {{ ds }}").code_hash()
    assert op.code_hash() != ShellOp("echo 2024-03-09").code_hash()


@pytest.mark.parametrize(
    ("command", "env", "problem"),
    [
        ("echo {{ params.msg }", {}, "template line 1"),
        ("echo '{{ params.msg }}'", {}, "inside single quotes"),
        ("true", {"ROTA_TPL_0": "x"}, "Rota's own"),
        ("true", {"X": "{% if %}"}, "task 'say' env 'X'"),
    ],
)
def test_a_bad_template_fails_the_definition(
    command: str, env: dict[str, str], problem: str
) -> None:
    with Flow("bad"), pytest.raises(DefinitionError) as info:
        ShellTask("say", command, env=env)
    assert str(info.value).startswith("task 'say'")
    assert problem in str(info.value)


# --- end to end through the CLI -----------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def rota(tmp_path: Path) -> Callable[..., Result]:
    """``python -m rota ARGS`` with ROTA_HOME in the test's folder (as in tests/cli)."""
    home = tmp_path / "rota-home"
    home.mkdir()

    def run(*args: str) -> Result:
        env = {**os.environ, "ROTA_HOME": str(home), "ROTA_WORKERS": "2"}
        env.pop("ROTA_DATABASE_URL", None)
        proc = subprocess.run(
            [sys.executable, "-m", "rota", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


def flow_file(tmp_path: Path, command: str) -> tuple[Path, Path]:
    """A flow ``say`` (param ``msg``) with one ShellTask running *command* in a work folder."""
    work = tmp_path / "work"
    work.mkdir()
    path = tmp_path / "flows" / "say.py"
    path.parent.mkdir()
    source = f"""
        from rota import Flow, ShellTask

        with Flow("say", params={{"msg": "hello"}}) as say:
            ShellTask("say", {command!r}, cwd={str(work)!r})
        """
    path.write_text(textwrap.dedent(source))
    return path, work


def test_a_params_value_does_not_execute(rota: Callable[..., Result], tmp_path: Path) -> None:
    path, work = flow_file(tmp_path, "echo {{ params.msg }} > out.txt")
    result = rota("run", str(path), "-p", f"msg={PWN}")
    assert result.code == 0, result.err
    assert pwned_files(tmp_path) == []
    assert (work / "out.txt").read_text() == PWN + "\n"


def test_ds_renders_the_run_date(rota: Callable[..., Result], tmp_path: Path) -> None:
    path, work = flow_file(tmp_path, 'echo {{ ds }} {{ ts }} "$ROTA_DS" > day.txt')
    before = datetime.now(UTC).date().isoformat()
    result = rota("run", str(path), "--json")
    after = datetime.now(UTC).date().isoformat()
    assert result.code == 0, result.err
    ds, ts, env_ds = (work / "day.txt").read_text().split()
    assert ds in (before, after)
    assert env_ds == ds
    assert ts.startswith(ds + "T")
    assert ts.endswith("+00:00")


def test_an_undefined_name_fails_the_task_not_the_process(
    rota: Callable[..., Result], tmp_path: Path
) -> None:
    # a misspelt params.NAME is refused at load (tests/cli/test_template_names.py); an attribute
    # the value lacks is known only when it renders
    path, work = flow_file(tmp_path, "touch ran; echo {{ params.msg.nope }}")
    result = rota("run", str(path), "--json")
    assert result.code == 1, result.err
    summary = json.loads(result.out.strip().splitlines()[-1])
    assert summary["state"] == "failed"
    assert summary["tasks"]["say"]["state"] == "failed"
    assert list(work.iterdir()) == []
    shown = rota("runs", "show", summary["run_id"])
    assert "TemplateRenderError" in shown.out
    assert "nope" in shown.out


def test_a_template_syntax_error_exits_2_naming_the_file(
    rota: Callable[..., Result], tmp_path: Path
) -> None:
    path, _ = flow_file(tmp_path, "echo {{ params.msg }")
    result = rota("run", str(path), "-p", f"msg={PWN}")
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1
    assert str(path) in result.err
    assert "task 'say': template error:" in result.err
    assert "Traceback" not in result.err
    assert pwned_files(tmp_path) == []
