"""``rota pools set|list|delete`` through the CLI, bad input to them (one line, exit 2, nothing
stored), and ``rota run`` / ``rota trigger`` refusing a flow whose pool is missing or too small
before any run is made; a SIGKILLed runner's slot comes back."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from clihelp import RotaCli, wait_for

from rota.store.sql import SqlStore

WriteFlow = Callable[[str, str], Path]

USES_GPU = """
from rota import flow, task

@task(pool="gpu", pool_slots={slots}, priority_weight=5)
def train() -> int:
    return 1

@flow
def needs_gpu():
    train()
"""


def _pools(rota: RotaCli) -> list[dict[str, object]]:
    listed = rota("pools", "list", "--json")
    assert listed.code == 0, listed.err
    rows: list[dict[str, object]] = listed.json()
    return rows


def test_pools_are_set_listed_resized_and_deleted(rota: RotaCli) -> None:
    (default,) = _pools(rota)
    assert (default["name"], default["slots"], default["open"]) == ("default_pool", 128, 128)
    made = rota("pools", "set", "gpu", "2", "--description", "two cards")
    assert (made.code, made.out.strip()) == (0, "pool gpu: 2 slots")
    assert rota("pools", "set", "any", "-1").out.strip() == "pool any: unlimited slots"
    assert rota("pools", "set", "gpu", "3").code == 0  # resized, description kept
    got = {p["name"]: (p["slots"], p["running"], p["waiting"], p["open"], p["description"])
           for p in _pools(rota)}  # fmt: skip
    assert got == {
        "default_pool": (128, 0, 0, 128, "Default pool"),
        "gpu": (3, 0, 0, 3, "two cards"),
        "any": (-1, 0, 0, None, ""),
    }
    table = rota("pools", "list")
    assert table.code == 0 and "two cards" in table.out and "unlimited" in table.out
    deleted = rota("pools", "delete", "any")
    assert (deleted.code, deleted.out.strip()) == (0, "pool any deleted")
    assert [p["name"] for p in _pools(rota)] == ["default_pool", "gpu"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set", "bad name", "2"), "invalid pool name 'bad name'"),
        (("set", "<b>x</b>", "2"), "invalid pool name '<b>x</b>'"),
        (("set", "gpu", "-5"), "slots must be a whole number from 0 to 2147483647, or -1"),
        (("set", "gpu", "2147483648"), "slots must be a whole number from 0 to 2147483647"),
        (("delete", "nope"), "no pool named 'nope'"),
        (("delete", "default_pool"), "default_pool cannot be deleted"),
    ],
)
def test_bad_input_to_pools_is_one_line_exit_2_and_changes_nothing(
    rota: RotaCli, store: SqlStore, args: tuple[str, ...], message: str
) -> None:
    before = _pools(rota)
    result = rota("pools", *args)
    assert result.code == 2, result
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert _pools(rota) == before


@pytest.mark.parametrize(
    ("slots", "made", "message"),
    [
        (1, False, "task 'train' uses pool 'gpu', which does not exist "
                   "(create it: rota pools set gpu N)"),
        (3, True, "task 'train' needs 3 slots of pool 'gpu', which has 2 (rota pools set gpu 3)"),
    ],
)  # fmt: skip
def test_run_and_trigger_refuse_a_missing_or_too_small_pool_before_any_run(
    rota: RotaCli, store: SqlStore, write_flow: WriteFlow, slots: int, made: bool, message: str
) -> None:
    if made:
        assert rota("pools", "set", "gpu", "2").code == 0
    path = write_flow("gpu.py", USES_GPU.format(slots=slots))
    for command in ("run", "trigger"):
        result = rota(command, str(path))
        assert result.code == 2, result
        assert message in result.err and "Traceback" not in result.err
    assert store.list_runs() == []


def test_a_task_that_fits_its_pool_runs(
    rota: RotaCli, store: SqlStore, write_flow: WriteFlow
) -> None:
    assert rota("pools", "set", "gpu", "1").code == 0
    path = write_flow("gpu.py", USES_GPU.format(slots=1))
    result = rota("run", str(path))
    assert result.code == 0, result.err
    (run,) = store.list_runs()
    assert run.state == "success"
    assert _pools(rota)[1]["running"] == 0  # the slot was given back


HOLDER = """
import time
from rota import flow, task

@task(pool="one")
def hold() -> None:
    time.sleep(60)

@flow
def holder():
    hold()
"""

TAKER = """
from rota import flow, task

@task(pool="one")
def take() -> int:
    return 2

@flow
def taker():
    take()
"""


def test_a_sigkilled_runners_slot_comes_back(
    rota: RotaCli, store: SqlStore, write_flow: WriteFlow, home: Path
) -> None:
    assert rota("pools", "set", "one", "1").code == 0
    holder = write_flow("holder.py", HOLDER)
    env = {**os.environ, "ROTA_HOME": str(home), "ROTA_WORKERS": "1"}
    env.pop("ROTA_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rota", "run", str(holder)], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: _pool(rota, "one")["running"] == 1, timeout=60, every=0.2)
        os.kill(proc.pid, signal.SIGKILL)  # the runner only: its worker may linger
        proc.wait(30)
        assert _pool(rota, "one")["running"] == 0  # its runner is provably gone
        taken = rota("run", str(write_flow("taker.py", TAKER)), timeout=60)
        assert taken.code == 0, taken.err
        assert {r.flow: r.state for r in store.list_runs()}["taker"] == "success"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _pool(rota: RotaCli, name: str) -> dict[str, object]:
    (found,) = [p for p in _pools(rota) if p["name"] == name]
    return found
