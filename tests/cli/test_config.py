"""Configuration files and ``rota config show``: every setting says where its value came from.

Real files read by the real ``rota`` command in a subprocess: ``$ROTA_HOME/rota.toml``,
``[tool.rota]`` of the nearest ``pyproject.toml`` above the working folder, ``ROTA_*``
variables. Unknown keys and bad values are one line naming the file (and line), exit 2, and
nothing is stored.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from clihelp import Result, RotaCli

from rota.config import Settings, Source
from rota.errors import ConfigError, UnsafeHome


def _one_line(result: Result) -> str:
    assert "Traceback" not in result.err, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _sources(rota: RotaCli, **env: str) -> dict[str, tuple[object, str, str]]:
    result = rota("config", "show", "--json", env=env)
    assert result.code == 0, result.err
    return {s["name"]: (s["value"], s["source"], s["where"]) for s in result.json()["settings"]}


def test_an_unknown_key_in_rota_toml_is_exit_2_naming_the_key_and_the_file(
    rota: RotaCli, home: Path
) -> None:
    (home / "rota.toml").write_text('executor = "threads"\nwrokers = 4\n')
    result = rota("runs", "list")
    assert result.code == 2, (result.code, result.err)
    line = _one_line(result)
    assert f"{home / 'rota.toml'}:2: unknown setting 'wrokers'" in line, line
    assert "did you mean 'workers'?" in line, line
    assert not (home / "rota.db").exists()  # nothing stored


def test_an_unknown_key_in_tool_rota_is_exit_2_naming_the_key_and_the_file(
    rota: RotaCli, tmp_path: Path, home: Path
) -> None:
    project = tmp_path / "pyproject.toml"  # the rota fixture runs in tmp_path
    project.write_text('[project]\nname = "x"\n\n[tool.rota]\nworkers = 2\ncolour = "always"\n')
    result = rota("config", "show")
    assert result.code == 2, (result.code, result.err)
    line = _one_line(result)
    assert f"{project}:6: unknown setting 'colour'" in line, line
    assert not (home / "rota.db").exists()


def test_config_show_reports_each_settings_source_and_the_later_layer_wins(
    rota: RotaCli, tmp_path: Path, home: Path
) -> None:
    (home / "rota.toml").write_text('workers = 3\nexecutor = "threads"\ndb_statement_timeout = 9\n')
    project = tmp_path / "pyproject.toml"
    project.write_text('[tool.rota]\nexecutor = "inprocess"\nflows = "pipelines"\n')
    got = _sources(rota, ROTA_DB_STATEMENT_TIMEOUT="12", ROTA_WORKERS="")  # empty: unset
    assert got["workers"] == (3, "file", str(home / "rota.toml"))
    assert got["executor"] == ("inprocess", "file", str(project))  # the project wins over the home
    assert got["db_statement_timeout"] == (12.0, "env", "ROTA_DB_STATEMENT_TIMEOUT")
    assert got["flows"] == (str(tmp_path / "pipelines"), "file", str(project))  # its folder
    assert got["home"] == (str(home), "env", "ROTA_HOME")
    assert got["db_connect_timeout"] == (10.0, "default", "")
    assert got["database_url"] == (f"sqlite:///{home / 'rota.db'}", "default", "")

    env = {"COLUMNS": "80", "ROTA_DB_STATEMENT_TIMEOUT": "12", "ROTA_WORKERS": ""}
    table = rota("config", "show", env=env)
    rows = {line.split()[0]: line.split()[1:] for line in table.out.splitlines() if line.strip()}
    assert rows["workers"] == ["3", "file", "rota.toml"]
    assert rows["executor"] == ["inprocess", "file", "pyproject.toml"]
    assert rows["db_statement_timeout"] == ["12", "env", "ROTA_DB_STATEMENT_TIMEOUT"]
    assert rows["db_connect_timeout"] == ["10", "default"]
    assert f"configuration files read: {home / 'rota.toml'}, {project} [tool.rota]" in table.out


def test_the_nearest_pyproject_with_a_tool_rota_table_is_read(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.rota]\nworkers = 7\n")
    inner = tmp_path / "pkg" / "sub"
    inner.mkdir(parents=True)
    (tmp_path / "pkg" / "pyproject.toml").write_text('[project]\nname = "pkg"\n')  # no table
    env = {"HOME": str(tmp_path / "nohome")}
    settings = Settings.load(env, inner)
    assert settings.workers == 7
    assert settings.source("workers") == Source("file", str(tmp_path / "pyproject.toml"))
    (tmp_path / "pkg" / "pyproject.toml").write_text("[tool.rota]\nworkers = 5\n")
    assert Settings.load(env, inner).workers == 5


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('workers = "four"\n', "rota.toml:1: workers must be an integer, got 'four'"),
        ("\n\nexecutor = 3\n", "rota.toml:3: executor must be a string, got 3"),
        ("db_connect_timeout = -1\n", "rota.toml:1: db_connect_timeout must be seconds >= 0"),
        ("workers = [\n", "rota.toml: not valid TOML: "),
        ('home = "/elsewhere"\n', "rota.toml:1: home cannot be set in rota.toml"),
    ],
    ids=["integer", "string", "seconds", "toml", "home"],
)
def test_a_bad_value_in_rota_toml_is_one_line_with_file_and_line(
    rota: RotaCli, home: Path, text: str, needle: str
) -> None:
    (home / "rota.toml").write_text(text)
    result = rota("runs", "list")
    assert result.code == 2, (result.code, result.err)
    assert needle in _one_line(result)
    assert not (home / "rota.db").exists()


def test_a_rota_toml_others_can_write_is_refused_and_a_readable_one_made_private(
    rota: RotaCli, home: Path
) -> None:
    config = home / "rota.toml"
    config.write_text("workers = 2\n")
    config.chmod(0o664)
    result = rota("runs", "list")
    assert result.code == 2, (result.code, result.err)
    line = _one_line(result)
    assert f"{config} can be written by its group" in line and "chmod 600" in line, line
    assert not (home / "rota.db").exists()
    config.chmod(0o644)
    assert rota("runs", "list").code == 0
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_a_pyproject_others_can_write_is_refused_and_its_mode_is_never_changed(
    tmp_path: Path,
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    path = project / "pyproject.toml"
    path.write_text("[tool.rota]\nworkers = 2\n")
    path.chmod(0o646)
    with pytest.raises(UnsafeHome, match="can be written by others"):
        Settings.load({"HOME": str(tmp_path)}, project)
    path.chmod(0o644)
    assert Settings.load({"HOME": str(tmp_path)}, project).workers == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # a project's file keeps its mode


def test_home_in_tool_rota_is_read_against_the_project_folder(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.rota]\nhome = ".rota-here"\n')
    (tmp_path / ".rota-here").mkdir(mode=0o700)
    (tmp_path / ".rota-here" / "rota.toml").write_text("workers = 6\n")
    settings = Settings.load({"HOME": str(tmp_path / "nohome")}, tmp_path)
    assert settings.home == tmp_path / ".rota-here"
    assert settings.workers == 6  # rota.toml is read from that home
    assert settings.database_url == f"sqlite:///{tmp_path / '.rota-here' / 'rota.db'}"
    env = {"HOME": str(tmp_path), "ROTA_HOME": str(tmp_path / "other")}
    assert Settings.load(env, tmp_path).home == tmp_path / "other"  # the variable wins


def test_flags_win_and_say_so() -> None:
    base = Settings.load({"HOME": "/nowhere", "ROTA_WORKERS": "3"}, Path("/"))
    given = base.with_options(workers=8, executor=None)
    assert (given.workers, str(given.source("workers"))) == (8, "flag --workers")
    assert given.source("executor") == Source("default")
    with pytest.raises(ConfigError, match="workers must be >= 0"):
        base.with_options(workers=-2)


def test_a_driver_started_elsewhere_gets_the_same_settings(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.rota]\nworkers = 3\nexecutor = "threads"\n')
    here = Settings.load({"HOME": str(tmp_path / "h")}, tmp_path)
    env = here.environment()
    assert (env["ROTA_WORKERS"], env["ROTA_EXECUTOR"]) == ("3", "threads")
    elsewhere = Settings.load({"HOME": str(tmp_path / "other"), **env}, Path("/"))
    assert (elsewhere.workers, elsewhere.executor, elsewhere.home) == (3, "threads", here.home)
    assert elsewhere.database_url == here.database_url


def test_config_show_masks_a_database_password(rota: RotaCli, home: Path) -> None:
    url = "postgresql+psycopg://rota:hunter2@127.0.0.1:5999/rota"
    (home / "rota.toml").write_text(f"database_url = {url!r}\n")
    result = rota("config", "show", "--json")
    assert result.code == 0, result.err
    assert "hunter2" not in result.out
    assert "hunter2" not in rota("config", "show").out
    shown = {s["name"]: s["value"] for s in result.json()["settings"]}
    assert shown["database_url"] == "postgresql+psycopg://rota:***@127.0.0.1:5999/rota"


def test_trigger_without_flows_says_how_to_name_a_folder(rota: RotaCli, home: Path) -> None:
    result = rota("trigger", "churn")
    assert result.code == 2, (result.code, result.err)
    line = _one_line(result)
    assert "'churn'" in line and "pass --flows DIR or set ROTA_FLOWS" in line, line


def test_flows_in_rota_toml_finds_a_flow_by_name(rota: RotaCli, home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "churn.py").write_text(
        "from rota import flow, task\n@task\ndef t() -> int:\n    return 1\n"
        "@flow\ndef churn():\n    t()\n"
    )
    (home / "rota.toml").write_text(f"flows = {str(folder)!r}\n")
    result = rota("trigger", "churn")
    assert result.code == 0, result.err
    assert "of flow churn queued" in result.out


def test_values_given_in_code_are_checked_too() -> None:
    with pytest.raises(ConfigError, match="executor must be one of"):
        Settings(home=Path("/x"), executor="gpu")
    made = Settings(home=Path("/x"))
    assert made.database_url == "sqlite:////x/rota.db"
    assert made.artifacts == "/x/artifacts"
    assert os.fspath(made.logs_dir) == "/x/logs"
