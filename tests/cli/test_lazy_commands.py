"""`rota` imports a command's modules only when that command is asked for (cli/main.py
COMMAND_MODULES); asked for alone, each command is exactly what it is with every module loaded."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import click

from rota.cli.main import COMMAND_MODULES, cli, load_all_commands

# In a fresh interpreter that imported only rota.cli.main: for each command, a forked child asks
# for that command alone and prints the tree of names under it.
_PROBE = textwrap.dedent(
    """
    import json, os, sys
    import click
    from rota.cli.main import COMMAND_MODULES, cli

    def tree(cmd):
        if isinstance(cmd, click.Group):
            return {n: tree(c) for n, c in sorted(cmd.commands.items())}
        return None

    loaded = sorted(m for m in sys.modules if m.startswith("rota.cli."))
    out = {"before": loaded, "alone": {}}
    for name in COMMAND_MODULES:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            with click.Context(cli) as ctx:
                got = cli.get_command(ctx, name)
            os.write(write, json.dumps(tree(got) if got is not None else "missing").encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as fh:
            out["alone"][name] = json.loads(fh.read())
        os.waitpid(pid, 0)
    print(json.dumps(out))
    """
)


def _tree(cmd: click.Command) -> object:
    if isinstance(cmd, click.Group):
        return {n: _tree(c) for n, c in sorted(cmd.commands.items())}
    return None


def test_each_command_alone_is_the_command_with_every_module_loaded() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    probe = json.loads(done.stdout)
    assert not [m for m in probe["before"] if m not in ("rota.cli.main",)], probe["before"]
    load_all_commands()
    assert set(cli.commands) == set(COMMAND_MODULES), "every command has its modules listed"
    full = {name: _tree(cmd) for name, cmd in cli.commands.items()}
    assert probe["alone"] == full


def test_a_run_imports_none_of_the_other_commands_modules() -> None:
    code = (
        "import json, sys, click\n"
        "from rota.cli.main import cli\n"
        "with click.Context(cli) as ctx: cli.get_command(ctx, 'run')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('rota.cli.'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(done.stdout))
    others = {f"rota.cli.{m}" for mods in COMMAND_MODULES.values() for m in mods} - {
        "rota.cli.commands"
    }
    assert not loaded & others, loaded & others
