"""``rota ui``: the web UI and HTTP API (needs the ``rota[ui]`` extra)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from rota.cli.main import CliContext, cli, open_store
from rota.errors import ConfigError


def _say(ctx: CliContext) -> Callable[[str], None]:
    return lambda line: ctx.err.print(line, highlight=False, soft_wrap=True)


@cli.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8570, show_default=True,
    help="Port to listen on (0: any free port; the URL printed names it).",
)  # fmt: skip
@click.option(
    "--flows", "flows_dir", envvar="ROTA_FLOWS",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of flow files: shows their schedules, and names flows for trigger and stats.",
)  # fmt: skip
@click.pass_obj
def ui_cmd(ctx: CliContext, host: str, port: int, flows_dir: Path | None) -> None:
    """Serve the web UI and HTTP API for this ROTA_HOME.

    Every route but /health needs the token, made on first start in $ROTA_HOME/ui-token (0600)
    and printed once; pages log in with it (a cookie), API clients send it as
    `Authorization: Bearer TOKEN`.

    \b
    Examples:
      rota ui
      rota ui --host 0.0.0.0 --port 8570
    """
    try:
        from rota.web.server import serve
    except ImportError as err:
        raise ConfigError(f"rota ui needs the ui extra: pip install 'rota[ui]' ({err})") from None
    if flows_dir is not None and not flows_dir.is_dir():
        raise ConfigError(f"--flows: no such folder: {flows_dir}")
    with open_store(ctx.settings) as store:
        try:
            serve(ctx.settings, store, host=host, port=port, flows_dir=flows_dir, say=_say(ctx))
        except OSError as err:
            raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
