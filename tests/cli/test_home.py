"""ROTA_HOME is private to its user: what Rota creates there is 0700/0600 whatever the umask, and
a home, ``logs/`` or ``rota.db`` another user owns or can write is refused with one line."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clihelp import Result, rota_env

WriteFlow = Callable[[str, str], Path]

EVERYTHING = """
import subprocess
import sys
from rota import flow, task

def explode(ctx):
    raise RuntimeError("this callback fails on purpose")

@task(retries=2, on_success=explode)
def extract(ctx) -> list[int]:
    print("extracting")
    subprocess.run(["echo", "a child prints too"], stdout=sys.stdout, check=True)
    if ctx.try_number == 1:
        ctx.checkpoint.save({"half": True})
        raise RuntimeError("first try fails after a checkpoint")
    return [1, 2, 3]

@task
def total(xs: list[int]) -> int:
    print("summing", xs)
    return sum(xs)

@flow
def everything():
    total(extract())
"""


def _rota(home: Path, cwd: Path, *args: str, umask: int = 0o022, **env: str) -> Result:
    """``python -m rota ARGS`` under *umask*, with ROTA_HOME=*home*."""
    proc = subprocess.run(
        [sys.executable, "-m", "rota", *args],
        capture_output=True,
        text=True,
        env=rota_env(home, ROTA_WORKERS="2", **env),
        cwd=cwd,
        timeout=180,
        check=False,
        umask=umask,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _modes(root: Path) -> dict[str, str]:
    """Every entry under *root* (and *root*), as relative path -> "d 700" / "f 600" / "l ..."."""
    found = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        kind = "d" if stat.S_ISDIR(info.st_mode) else "f" if stat.S_ISREG(info.st_mode) else "l"
        found[str(path.relative_to(root))] = f"{kind} {stat.S_IMODE(info.st_mode):o}"
    return found


def _assert_private(root: Path) -> dict[str, str]:
    found = _modes(root)
    loose = {p: m for p, m in found.items() if m not in ("d 700", "f 600")}
    assert not loose, f"not private under {root}: {loose}"
    return found


@pytest.mark.parametrize(
    ("executor", "umask"), [("local", 0o022), ("threads", 0o000)], ids=["local-022", "threads-000"]
)
def test_everything_a_run_creates_under_the_home_is_0700_or_0600_whatever_the_umask(
    tmp_path: Path, write_flow: WriteFlow, executor: str, umask: int
) -> None:
    home = tmp_path / "new-home" / "rota"  # neither exists yet: Rota makes both
    path = write_flow("everything.py", EVERYTHING)
    ran = _rota(
        home,
        tmp_path,
        "run",
        str(path),
        "--executor",
        executor,
        "--json",
        umask=umask,
        ROTA_INLINE_OUTPUT_MAX="0",
    )  # outputs in files: their modes are checked
    assert ran.code == 0, ran.err
    run_id = ran.json()["run_id"]
    found = _assert_private(tmp_path / "new-home")
    for made in [
        "rota/rota.db",
        f"rota/logs/{run_id}/extract/1.log",
        f"rota/logs/{run_id}/extract/2.log",
        f"rota/logs/{run_id}/total/1.log",
        f"rota/logs/{run_id}/callbacks.log",
        f"rota/checkpoints/{run_id}/extract",
    ]:
        assert found.get(made) == "f 600", (made, sorted(found))
    assert sum(p.startswith(f"rota/artifacts/{run_id}/") for p in found) == 2
    # SQLite's -wal and -shm files take the database file's mode: hold them open and look.
    with sqlite3.connect(home / "rota.db") as held:
        held.execute("select count(*) from runs").fetchone()
        again = _rota(home, tmp_path, "run", str(path), "--executor", executor, umask=umask)
        assert again.code == 0, again.err
        assert (home / "rota.db-wal").exists() and (home / "rota.db-shm").exists()
        _assert_private(tmp_path / "new-home")


DAILY = """
from rota import flow, task

@task
def hello() -> None:
    print("hello from a driver's run")

@flow(schedule="@daily")
def daily():
    hello()
"""


def test_the_scheduler_s_driver_logs_are_private_too(tmp_path: Path, write_flow: WriteFlow) -> None:
    home = tmp_path / "home"
    path = write_flow("daily.py", DAILY)
    queued = _rota(home, tmp_path, "trigger", "daily", "--flows", str(path.parent))
    assert queued.code == 0, queued.err
    done = _rota(home, tmp_path, "scheduler", "--flows", str(path.parent), "--once")
    assert done.code == 0, done.err
    found = _assert_private(home)
    assert any(p.startswith("logs/drivers/") and p.endswith(".driver.log") for p in found), found


# --- a home others could tamper with is refused ------------------------------------------------


@pytest.fixture
def made_home(tmp_path: Path, write_flow: WriteFlow) -> Iterator[Path]:
    """A home with a store, a run and its logs in it, as one ``rota run`` leaves it."""
    home = tmp_path / "home"
    path = write_flow("daily.py", DAILY)
    ran = _rota(home, tmp_path, "run", str(path))
    assert ran.code == 0, ran.err
    assert (home / "logs").is_dir() and (home / "rota.db").is_file()
    yield home


def _assert_refused(result: Result, path: Path, fix: str) -> None:
    assert result.code == 2, (result.code, result.err)
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert str(path) in lines[0] and fix in lines[0], lines[0]


@pytest.mark.parametrize("where", ["", "logs", "rota.db"], ids=["home", "logs", "rota.db"])
@pytest.mark.parametrize("bits", [0o020, 0o002], ids=["group", "others"])
def test_a_home_logs_or_store_that_group_or_others_can_write_is_refused(
    made_home: Path, tmp_path: Path, where: str, bits: int
) -> None:
    target = made_home / where if where else made_home
    mode = stat.S_IMODE(target.stat().st_mode) | bits
    target.chmod(mode)
    db_before = (made_home / "rota.db").read_bytes()
    result = _rota(made_home, tmp_path, "runs", "list")
    fix = f"chmod {700 if target.is_dir() else 600} {target}"
    _assert_refused(result, target, fix)
    assert stat.S_IMODE(target.stat().st_mode) == mode, "a refused path is left as it was"
    assert (made_home / "rota.db").read_bytes() == db_before


def test_a_planted_wal_file_is_refused(made_home: Path, tmp_path: Path) -> None:
    wal = made_home / "rota.db-wal"
    wal.write_bytes(b"")
    wal.chmod(0o666)
    result = _rota(made_home, tmp_path, "runs", "list")
    _assert_refused(result, wal, f"chmod 600 {wal}")


def _other_user(path: Path) -> None:
    """Give *path* to the user ``nobody`` (only root can; elsewhere the test cannot be made)."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    os.chown(path, 65534, -1)


@pytest.mark.parametrize("where", ["", "logs", "rota.db"], ids=["home", "logs", "rota.db"])
def test_a_home_logs_or_store_another_user_owns_is_refused(
    made_home: Path, tmp_path: Path, where: str
) -> None:
    target = made_home / where if where else made_home
    _other_user(target)
    result = _rota(made_home, tmp_path, "runs", "list")
    _assert_refused(result, target, "chown")
    assert "not to you" in result.err


EVIL = """
from pathlib import Path
from rota import flow, task

Path(__file__).with_name("imported").write_text("the flow file was imported")

@task
def fails() -> None:
    raise RuntimeError("so that there is something to resume")

@flow
def victim():
    fails()
"""


def test_a_planted_store_never_decides_which_flow_file_resume_imports(
    tmp_path: Path, write_flow: WriteFlow
) -> None:
    home = tmp_path / "home"
    path = write_flow("victim.py", EVIL)
    ran = _rota(home, tmp_path, "run", str(path), "--json")
    assert ran.code == 1, ran.err
    run_id = ran.json()["run_id"]
    marker = path.with_name("imported")
    marker.unlink()
    _other_user(home / "rota.db")  # as if another user had put this store there
    result = _rota(home, tmp_path, "resume", run_id)
    _assert_refused(result, home / "rota.db", "chown")
    assert not marker.exists(), "resume imported the flow file the planted store names"


def test_an_existing_home_readable_by_others_is_made_private(
    made_home: Path, tmp_path: Path
) -> None:
    for path in [made_home, made_home / "logs"]:
        path.chmod(0o755)
    (made_home / "rota.db").chmod(0o644)
    result = _rota(made_home, tmp_path, "runs", "list")
    assert result.code == 0, result.err
    assert stat.S_IMODE(made_home.stat().st_mode) == 0o700
    assert stat.S_IMODE((made_home / "logs").stat().st_mode) == 0o700
    assert stat.S_IMODE((made_home / "rota.db").stat().st_mode) == 0o600


def test_a_home_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _rota(blocker / "home", tmp_path, "runs", "list")
    _assert_refused(result, blocker / "home", "cannot create ROTA_HOME")


def test_commands_that_do_not_open_the_home_do_not_make_it(
    tmp_path: Path, write_flow: WriteFlow
) -> None:
    home = tmp_path / "home"
    path = write_flow("daily.py", DAILY)
    shown = _rota(home, tmp_path, "graph", str(path))
    assert shown.code == 0, shown.err
    assert not home.exists()
