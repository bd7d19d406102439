"""The ``rota`` command. Thin: parse, call the engine and store, render.

This is the only place that maps errors to exit codes: 0 success, 1 a run failed, 2 bad input
(one line, no traceback, nothing stored), 130 interrupted.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rota.config import Settings
from rota.engine.session import open_store
from rota.errors import ParameterError, RotaError, UserError
from rota.model.safetext import safe_text

if TYPE_CHECKING:  # rich loads when a command first prints, not for `rota --help`
    from rota.cli.console import SafeConsole

__all__ = ["CliContext", "cli", "main", "open_store", "parse_params"]


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


from rota.cli import backfill as _backfill  # noqa: E402, F401
from rota.cli import commands as _commands  # noqa: E402  (registers the commands on `cli`)
from rota.cli import completion as _completion  # noqa: E402
from rota.cli import configure as _configure  # noqa: E402
from rota.cli import data as _data  # noqa: E402
from rota.cli import logs as _logs  # noqa: E402
from rota.cli import pools as _pools  # noqa: E402
from rota.cli import prune as _prune  # noqa: E402
from rota.cli import rerun as _rerun  # noqa: E402
from rota.cli import stats as _stats  # noqa: E402
from rota.cli import steer as _steer  # noqa: E402
from rota.cli import tasktest as _tasktest  # noqa: E402
from rota.cli import timing as _timing  # noqa: E402
from rota.cli import ui as _ui  # noqa: E402

del _commands, _completion, _configure, _data, _logs, _pools, _prune, _rerun, _stats, _steer
del _tasktest, _timing, _ui


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
