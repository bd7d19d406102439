"""``rota config show``: every effective setting, and where its value came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rota.cli.main import CliContext, cli
from rota.config import Settings, env_name, specs


def _settings_help() -> str:
    return "\n".join(f"  {name} ({env_name(name)}): {spec.help}" for name, spec in specs().items())


@cli.group("config")
def config_group() -> None:
    """Rota's settings and where they come from.

    \b
    Example:
      rota config show
    """


@config_group.command(
    "show",
    epilog="\b\nSettings (the key in a file, its variable):\n" + _settings_help() + "\n",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def config_show(ctx: CliContext, as_json: bool) -> None:
    """Print each effective setting, its value and where it came from.

    Each setting takes, the later winning: its default; $ROTA_HOME/rota.toml; [tool.rota] in
    the nearest pyproject.toml at or above this folder; its ROTA_* variable; a command's flag.
    A key no setting has, in either file, is an error naming the key and the file. A password
    in a database URL is shown as ***.

    \b
    Examples:
      rota config show
      ROTA_WORKERS=2 rota config show --json
    """
    from rich import box
    from rich.table import Table

    from rota.cli import render

    settings = ctx.settings
    if as_json:
        render.print_json(ctx.console, _as_json(settings))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("setting", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("source", no_wrap=True)
    for name, value, source, _help in settings.shown():
        where = Path(source.where).name if source.kind == "file" else source.where
        table.add_row(name, value or "-", f"{source.kind} {where}".strip())
    ctx.console.print(table)
    read = ", ".join(settings.files) or "none"
    ctx.console.print(f"configuration files read: {read}", highlight=False, soft_wrap=True)


def _as_json(settings: Settings) -> dict[str, Any]:
    rows = []
    for name, value, source, help_text in settings.shown():
        raw = getattr(settings, name)
        typed = raw if isinstance(raw, int | float) and not specs()[name].secret else value
        rows.append(
            {"name": name, "value": typed if raw is not None else None, "source": source.kind,
             "where": source.where, "variable": env_name(name), "help": help_text}
        )  # fmt: skip
    return {"settings": rows, "files": list(settings.files)}
