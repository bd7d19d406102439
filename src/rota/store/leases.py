"""SQL for who drives a run: schedulers' claims, their renewal, and a runner's lease check.

Every statement is a conditional ``UPDATE`` whose row count says whether it won, so two
schedulers (or a scheduler and a runner) racing for one run on PostgreSQL never both win: the
second waits for the first's row lock, then finds the row changed and matches nothing.
Functions take a connection inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, bindparam, func, literal, select, update

from rota.model.states import RunState
from rota.store.base import Claim, Lease
from rota.store.tables import runs
from rota.store.writes import to_utc

_r = runs.c
UNFINISHED: Final = (RunState.QUEUED.value, RunState.RUNNING.value, RunState.INTERRUPTED.value)
"""Run states a run may be claimed in."""
_FLOW_LOCKS: Final = 0x526F7466  # namespace of the per-flow advisory locks ("Rotf")


class LeaseMismatch(Exception):
    """Raised inside a write transaction to roll it back: the lease's owner no longer holds it."""


LEASE_RENEWAL: Final = (
    update(runs)
    .where(_r.run_id == bindparam("b_id"), _r.owner == bindparam("b_owner"))
    .values(heartbeat_at=bindparam("b_at", type_=_r.heartbeat_at.type))
)
"""Renews a lease: the run's heartbeat, where *owner* still holds it (one row, or none)."""


def lease_params(lease: Lease, at: datetime) -> dict[str, Any]:
    """The values of :data:`LEASE_RENEWAL` for *lease* renewed at *at*."""
    return {"b_id": lease.run_id, "b_owner": lease.owner, "b_at": to_utc(at)}


def hold_lease(conn: Connection, lease: Lease, at: datetime) -> None:
    """Renew *lease* inside the caller's transaction (the run's heartbeat becomes *at*).

    Raises:
        LeaseMismatch: the run has another owner (or none).
    """
    if conn.execute(LEASE_RENEWAL, lease_params(lease, at)).rowcount != 1:
        raise LeaseMismatch


def claim_run(
    conn: Connection, claim: Claim, owner: str, at: datetime, flow_limit: int | None
) -> bool:
    """Take the run of *claim* for *owner* if it is unchanged, unfinished and within the limit."""
    if flow_limit is not None and _flow_full(conn, claim.run_id, flow_limit):
        return False
    beat = to_utc(claim.heartbeat_at) if claim.heartbeat_at is not None else None
    stmt = (
        update(runs)
        .where(
            _r.run_id == claim.run_id,
            _r.owner.is_not_distinct_from(claim.owner),
            _r.heartbeat_at.is_not_distinct_from(beat),
            _r.state.in_(UNFINISHED),
        )
        .values(owner=owner, heartbeat_at=to_utc(at))
    )
    return bool(conn.execute(stmt).rowcount == 1)


def _flow_full(conn: Connection, run_id: str, limit: int) -> bool:
    """Whether *limit* or more other runs of *run_id*'s flow have an owner.

    On PostgreSQL the count is made under a transaction-scoped advisory lock on the flow, so two
    schedulers claiming runs of one flow count one after the other; SQLite's write transactions
    are serialized anyway.
    """
    flow = conn.execute(select(_r.flow).where(_r.run_id == run_id)).scalar()
    if flow is None:
        return True
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(literal(_FLOW_LOCKS), func.hashtext(flow))))
    held = (
        select(func.count())
        .select_from(runs)
        .where(
            _r.flow == flow,
            _r.run_id != run_id,
            _r.owner.is_not(None),
            _r.state.in_(UNFINISHED),
        )
    )
    return int(conn.execute(held).scalar() or 0) >= limit


def renew_claims(conn: Connection, owner: str, run_ids: Sequence[str], at: datetime) -> int:
    """Set the heartbeat of those of *run_ids* that *owner* holds; return how many."""
    if not run_ids:
        return 0
    stmt = (
        update(runs)
        .where(_r.owner == owner, _r.run_id.in_(sorted(run_ids)))
        .values(heartbeat_at=to_utc(at))
    )
    return int(conn.execute(stmt).rowcount)
