"""``rota pools``: named pools of slots that every run shares (Airflow's ``airflow pools``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from rota.cli.main import CliContext, cli, open_store

if TYPE_CHECKING:
    from rota.store.base import Liveness


def _live(ctx: CliContext) -> Liveness:
    """Which claims count: a run's lease older than the heartbeat timeout holds no slots."""
    from rota.engine.poolview import liveness_now

    return liveness_now(ctx.settings.heartbeat_timeout)


def _size(slots: int) -> str:
    return "unlimited" if slots < 0 else str(slots)


@cli.group("pools")
def pools_group() -> None:
    """Pools: named numbers of slots shared by every run (tasks take pool= and pool_slots=)."""


@pools_group.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("slots", type=int)
@click.option("--description", help="What the pool is for (kept when not given).")
@click.pass_obj
def pools_set(ctx: CliContext, name: str, slots: int, description: str | None) -> None:
    """Create pool NAME with SLOTS slots, or resize it (-1: no limit; 0: tasks using it wait).

    A smaller pool lets the tasks holding its slots finish; new ones wait until they fit.

    \b
    Examples:
      rota pools set gpu 2 --description 'the two GPUs'
      rota pools set gpu -1
    """
    with open_store(ctx.settings) as store:
        pool = store.set_pool(name, slots, description=description, at=datetime.now(UTC))
    ctx.console.print(f"pool {pool.name}: {_size(pool.slots)} slots", highlight=False)


@pools_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def pools_list(ctx: CliContext, as_json: bool) -> None:
    """Every pool: its slots, those held by running tasks, the tasks waiting, those open.

    \b
    Example:
      rota pools list --json
    """
    from rich.table import Table

    from rota.cli import render
    from rota.engine.poolview import pool_json

    with open_store(ctx.settings) as store:
        found = store.pools(_live(ctx))
    if as_json:
        render.print_json(ctx.console, [pool_json(p) for p in found])
        return
    table = Table()
    for col in ("pool", "slots", "running", "waiting", "open", "description"):
        table.add_column(col)
    for p in found:
        free = "-" if p.open is None else str(p.open)
        table.add_row(p.name, _size(p.slots), str(p.running), str(p.waiting), free, p.description)
    ctx.console.print(table)


@pools_group.command("delete")
@click.argument("name")
@click.pass_obj
def pools_delete(ctx: CliContext, name: str) -> None:
    """Delete pool NAME (not default_pool, nor a pool whose slots are held or waited for).

    \b
    Example:
      rota pools delete gpu
    """
    with open_store(ctx.settings) as store:
        store.delete_pool(name, _live(ctx))
    ctx.console.print(f"pool {name} deleted", highlight=False)
