"""``rota completion bash|zsh|fish``: the script that makes a shell complete ``rota`` commands,
options, flow names and run ids (click's shell completion; the words come from the store)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from rota.cli.main import cli

SHELLS = ("bash", "zsh", "fish")


@cli.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion_cmd(shell: str) -> None:
    """Print the completion script of SHELL: commands, options, flow names and run ids.

    Load it from your shell's start-up file. Completing a run id or a flow name reads the store
    of ROTA_HOME (ROTA_DATABASE_URL), if it exists; it never makes one.

    \b
    Examples:
      eval "$(rota completion bash)"            # in ~/.bashrc
      eval "$(rota completion zsh)"             # in ~/.zshrc
      rota completion fish > ~/.config/fish/completions/rota.fish
    """
    found = get_completion_class(shell)
    if found is None:  # pragma: no cover - click knows the three it is offered
        raise click.UsageError(f"click has no completion for {shell}")
    script = found(cli, {}, "rota", "_ROTA_COMPLETE").source()
    click.echo(script.rstrip("\n"))
