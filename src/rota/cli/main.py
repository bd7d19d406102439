"""The ``rota`` command. Thin: parse, call the engine and store, render.

This is the only place that maps errors to exit codes: 0 success, 1 a run failed, 2 bad input
(one line, no traceback, nothing stored), 130 interrupted.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from rota.config import Settings
from rota.engine.session import open_store
from rota.errors import ParameterError, RotaError, UserError
from rota.model.safetext import safe_text

if TYPE_CHECKING:  # rich loads when a command first prints, not for `rota --help`
    from rota.cli.console import SafeConsole

__all__ = ["CliContext", "cli", "load_all_commands", "main", "open_store", "parse_params"]


@dataclass
class CliContext:
    """What every command gets: the settings (files, environment), consoles, the exit code to use.

    Both consoles print strings as plain safe text, never as markup (:mod:`rota.cli.console`).
    """

    environ: dict[str, str]
    exit_code: int = 0
    placement: dict[str, str | None] = field(default_factory=dict)
    """``--dask-address`` and ``--artifacts`` of the command, for its executor's settings."""
    _settings: Settings | None = field(default=None, repr=False)
    _consoles: dict[str, SafeConsole] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> CliContext:
        return cls(dict(environ))

    @property
    def console(self) -> SafeConsole:
        """The console on stdout, made when a command first prints."""
        return self._console("out")

    @property
    def err(self) -> SafeConsole:
        """The console on stderr, made when a command first prints there."""
        return self._console("err")

    def _console(self, which: str) -> SafeConsole:
        if which not in self._consoles:
            from rota.cli.console import SafeConsole

            self._consoles[which] = SafeConsole(stderr=which == "err")
        return self._consoles[which]

    @property
    def settings(self) -> Settings:
        """The settings, read when a command first needs them (so that a bad value is a one-line
        error of that command, and ``--help`` still works): defaults, ``$ROTA_HOME/rota.toml``,
        ``[tool.rota]`` of the nearest ``pyproject.toml``, ``ROTA_*`` variables.

        Raises:
            ConfigError: a configuration file has an unknown key, or a value is invalid.
        """
        if self._settings is None:
            self._settings = Settings.load(self.environ, Path.cwd())
        return self._settings


COMMAND_MODULES: Final[dict[str, tuple[str, ...]]] = {
    "run": ("commands",),
    "runs": ("commands", "prune", "steer"),
    "tasks": ("commands", "logs", "tasktest"),
    "flows": ("commands", "steer"),
    "graph": ("commands",),
    "backfill": ("backfill",),
    "completion": ("completion",),
    "config": ("configure",),
    "outputs": ("data",),
    "cache": ("data",),
    "datasets": ("data",),
    "lineage": ("data",),
    "pools": ("pools",),
    "resume": ("rerun",),
    "clear": ("rerun",),
    "mark": ("rerun",),
    "stats": ("stats",),
    "cancel": ("steer",),
    "pause": ("steer",),
    "unpause": ("steer",),
    "_drive": ("timing",),
    "trigger": ("timing",),
    "scheduler": ("timing",),
    "ui": ("ui",),
}
"""The modules of ``rota.cli`` that define each command of ``rota`` and its subcommands
(tests/cli/test_lazy_commands.py checks it against the commands every module defines)."""


class _LazyGroup(click.Group):
    """The ``rota`` group: a command's modules are imported when the command is asked for, so
    ``rota run`` does not import the other twenty commands' code (and what they import)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for module in COMMAND_MODULES.get(cmd_name, ()):
            importlib.import_module(f"rota.cli.{module}")
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        load_all_commands()
        return super().list_commands(ctx)


def load_all_commands() -> None:
    """Import every module that defines commands (``--help``, completion, the docs)."""
    for modules in COMMAND_MODULES.values():
        for module in modules:
            importlib.import_module(f"rota.cli.{module}")


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rota")
def cli() -> None:
    """Rota: workflow orchestration for machine-learning pipelines."""


def parse_params(loaded: Any, raw: tuple[str, ...]) -> dict[str, Any]:
    """Turn ``-p key=value`` options into typed parameter values.

    Raises:
        ParameterError: a malformed option or an unknown parameter.
    """
    from rota.model.params import parse_param

    specs = {p.name: p for p in loaded.definition.params}
    out: dict[str, Any] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParameterError(f"-p expects key=value, got {item!r}")
        if key not in specs:
            known = ", ".join(sorted(specs)) or "none"
            raise ParameterError(
                f"unknown parameter {key!r} for flow {loaded.name!r} (parameters: {known})"
            )
        out[key] = parse_param(specs[key], value)
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``rota`` console script."""
    # SIGTERM stops a run the way Ctrl-C does: attempts in flight are marked interrupted.
    signal.signal(signal.SIGTERM, _interrupt)
    obj = CliContext.from_env(dict(os.environ))
    try:
        cli.main(args=argv, prog_name="rota", standalone_mode=False, obj=obj)
    except click.exceptions.Abort:
        click.echo("rota: interrupted", err=True)
        raise SystemExit(130) from None
    except click.ClickException as err:  # usage errors keep click's own message
        err.show()
        raise SystemExit(2) from None
    except UserError as err:  # bad input: one line, no traceback, nothing stored
        click.echo(f"rota: error: {safe_text(err)}", err=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        click.echo("rota: interrupted", err=True)
        raise SystemExit(130) from None
    except RotaError as err:  # the store or an executor failed: one line unless ROTA_DEBUG
        if os.environ.get("ROTA_DEBUG"):
            raise
        text = safe_text(err)
        click.echo(f"rota: {type(err).__name__}: {text} (set ROTA_DEBUG=1 for details)", err=True)
        raise SystemExit(1) from None
    sys.stdout.flush()
    raise SystemExit(obj.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
