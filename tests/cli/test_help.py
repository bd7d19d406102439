"""Every command's --help has an example and every option a help text; NO_COLOR is honoured;
shell completion offers commands, flow names and run ids."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from clihelp import RotaCli

from rota.cli.main import cli
from rota.store.sql import SqlStore


def _commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, click.Command]]:
    # through click's own lookup: the `rota` group imports a command's modules when asked
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        here = (*path, name)
        if isinstance(command, click.Group):
            yield from _commands(command, here)
        else:
            yield " ".join(here), command


def test_every_command_has_an_example_and_every_option_a_help_text() -> None:
    missing = []
    for name, command in _commands(cli):
        if "Example" not in (command.help or ""):
            missing.append(f"rota {name}: no example")
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden and not param.help:
                missing.append(f"rota {name} {param.opts[0]}: no help")
    assert missing == []


def test_the_walk_sees_every_command() -> None:
    names = {name for name, _ in _commands(cli)}
    assert {"runs show", "runs cancel", "runs prune", "flows pause", "config show"} <= names
    assert len(names) > 25


FLOW = """
from rota import flow, task

@task
def one() -> int:
    return 1

@flow
def demo():
    one()
"""


def _complete(rota: RotaCli, shell: str, words: str, env: dict[str, str] | None = None) -> str:
    cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    done = rota(env={"_ROTA_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
                     "COMP_CWORD": cword, **(env or {})})  # fmt: skip
    assert done.code == 0, done
    return done.out


def test_no_color_drops_the_colours_that_a_forced_terminal_shows(
    rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    assert rota("run", str(write_flow("demo.py", FLOW))).code == 0
    coloured = rota("runs", "list", env={"FORCE_COLOR": "1"})
    assert re.search(r"\x1b\[3\dm", coloured.out), coloured.out  # success is green
    plain = rota("runs", "list", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert plain.code == 0 and "success" in plain.out
    assert not re.search(r"\x1b\[[0-9;]*3\d(;[0-9;]*)?m", plain.out), plain.out


def test_completion_offers_commands_flow_names_and_run_ids(
    rota: RotaCli, store: SqlStore, write_flow: Callable[[str, str], Path]
) -> None:
    assert rota("run", str(write_flow("demo.py", FLOW))).code == 0
    (run_id,) = [r.run_id for r in store.list_runs()]
    assert "plain,show" in _complete(rota, "bash", "rota runs s").splitlines()
    assert _complete(rota, "bash", "rota runs list --flow d").splitlines() == ["plain,demo"]
    offered = _complete(rota, "zsh", f"rota runs show {run_id[:6]}").splitlines()
    assert offered[:3] == ["plain", run_id, "demo success"]
    assert _complete(rota, "bash", "rota resume nosuch").strip() == ""


def test_completion_without_a_store_offers_nothing_and_makes_none(
    rota: RotaCli, home: Path
) -> None:
    assert _complete(rota, "bash", "rota runs show 2").strip() == ""
    assert not (home / "rota.db").exists()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_each_shells_script(rota: RotaCli, shell: str) -> None:
    done = rota("completion", shell)
    assert done.code == 0, done
    assert "_ROTA_COMPLETE" in done.out and f"{shell}_complete" in done.out
    assert rota("completion", "tcsh").code == 2
