"""SQL for pools and slot claims: one allocation pass per transaction, pools made and listed.

A claim row lives while its attempt is queued or running (:func:`release_ended` drops it in the
same transaction as the attempt's change to any other state) and while its owner holds its run's
lease. A pass (:func:`claim`) runs under a lock that serializes passes: PostgreSQL's transaction
advisory lock, SQLite's write lock (``BEGIN IMMEDIATE``). Under it the pass reads every claim,
drops those that are not alive (their runner lost or gave up its lease, or is known to be dead),
and lets :func:`rota.model.allocation.allocate` decide, so two runners never grant one slot twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, RowMapping, bindparam, delete, func, insert, select, update

from rota.errors import DefinitionError, PoolError
from rota.model.allocation import Allocation, Claim, allocate
from rota.model.pools import DEFAULT_POOL, SLOTS_MAX, check_pool_name
from rota.model.states import TaskState
from rota.store.base import Change, Liveness, PoolRecord, SlotRequest
from rota.store.tables import pools, runs, slot_claims
from rota.store.writes import to_utc

_c = slot_claims.c
_p = pools.c
_SLOT_LOCK: Final = 0x526F7450  # PostgreSQL advisory lock key of allocation passes ("RotP")
HOLDING: Final = frozenset({TaskState.QUEUED, TaskState.RUNNING})
"""The states in which an attempt may keep a claim."""

_DROP: Final = delete(slot_claims).where(_c.attempt_id == bindparam("b_attempt"))


def release_ended(conn: Connection, changes: Sequence[Change]) -> None:
    """Drop the claims of the attempts *changes* move to a state that holds no slot."""
    ended = [{"b_attempt": c.attempt_id} for c in changes if c.new not in HOLDING]
    if ended:
        conn.execute(_DROP, ended)


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_SLOT_LOCK)))


def _claim_of(row: RowMapping) -> Claim:
    return Claim(
        row["attempt_id"], row["owner"], row["pool"], row["pool_slots"], row["priority"],
        row["run_date"], row["seq"], bool(row["held"]), row["grp"], row["grp_limit"],
        row["owner_free"],
    )  # fmt: skip


def _rows(conn: Connection, live: Liveness) -> tuple[list[RowMapping], list[int]]:
    """Every claim row with its run's lease; the live ones, and the seqs of the others."""
    query = select(slot_claims, runs.c.owner.label("run_owner"), runs.c.heartbeat_at).select_from(
        slot_claims.outerjoin(runs, runs.c.run_id == _c.run_id)
    )
    dead_owner: dict[str, bool] = {}
    alive: list[RowMapping] = []
    gone: list[int] = []
    for row in conn.execute(query.order_by(_c.seq)):
        m = row._mapping
        owner = m["owner"]
        if owner != live.me:
            beat = m["heartbeat_at"]
            leased = m["run_owner"] == owner and beat is not None and beat >= live.stale_before
            if owner not in dead_owner:
                dead_owner[owner] = live.is_dead(owner)
            if not leased or dead_owner[owner]:
                gone.append(m["seq"])
                continue
        alive.append(m)
    return alive, gone


def _sizes(conn: Connection) -> dict[str, int]:
    return {str(name): int(slots) for name, slots in conn.execute(select(_p.name, _p.slots))}


def claim(
    conn: Connection,
    wanted: Sequence[SlotRequest],
    release: Sequence[int],
    free: int,
    live: Liveness,
    at: datetime,
) -> Allocation:
    """One allocation pass for ``live.me`` (see :meth:`rota.store.base.Store.claim_slots`)."""
    _lock(conn)
    me = live.me
    if release:
        conn.execute(delete(slot_claims).where(_c.owner == me, _c.attempt_id.in_(release)))
    rows, drop = _rows(conn, live)
    wanted_ids = {w.attempt_id for w in wanted}
    mine: dict[int, RowMapping] = {}
    claims: list[Claim] = []
    for row in rows:
        ours = row["owner"] == me
        if (row["attempt_id"] in wanted_ids and not ours) or (
            ours and not row["held"] and row["attempt_id"] not in wanted_ids
        ):
            drop.append(row["seq"])  # another owner's claim on our attempt, or out of our window
            continue
        if ours:
            mine[row["attempt_id"]] = row
        claims.append(_claim_of(row))
    top = max((r["seq"] for r in rows), default=0)
    new = [w for w in wanted if w.attempt_id not in mine]
    claims.extend(_filed(w, me, top + 1 + i) for i, w in enumerate(new))
    alloc = allocate(claims, _sizes(conn), me=me, free=free)
    drop.extend(mine[a]["seq"] for a in alloc.refused if a in mine)
    _write(conn, me, drop, new, alloc, max(0, free - len(alloc.granted)), at)
    held = [w.attempt_id for w in wanted if w.attempt_id in mine and mine[w.attempt_id]["held"]]
    alloc.granted[:0] = held  # held already (a pass whose answer was lost): dispatch them
    return alloc


def _filed(w: SlotRequest, me: str, seq: int) -> Claim:
    return Claim(
        w.attempt_id, me, w.pool, w.pool_slots, w.priority, w.run_date, seq,
        group=w.group, group_limit=w.group_limit,
    )  # fmt: skip


def _write(
    conn: Connection,
    me: str,
    drop: Iterable[int],
    new: Sequence[SlotRequest],
    alloc: Allocation,
    remaining: int,
    at: datetime,
) -> None:
    """Store a pass's outcome: dropped rows, new claims, grants, and what *me* can still take."""
    gone = [{"b_seq": seq} for seq in drop]
    if gone:
        conn.execute(delete(slot_claims).where(_c.seq == bindparam("b_seq")), gone)
    granted = set(alloc.granted)
    rows = [_new_row(w, me, w.attempt_id in granted, remaining, at) for w in new]
    rows = [r for r in rows if r["attempt_id"] not in alloc.refused]
    if rows:
        conn.execute(insert(slot_claims), rows)
    if granted:
        conn.execute(
            update(slot_claims)
            .where(_c.owner == me, _c.attempt_id.in_(granted), _c.held.is_(False))
            .values(held=True)
        )
    conn.execute(
        update(slot_claims)
        .where(_c.owner == me, _c.held.is_(False), _c.owner_free != remaining)
        .values(owner_free=remaining)
    )


def _new_row(w: SlotRequest, me: str, held: bool, remaining: int, at: datetime) -> dict[str, Any]:
    return {
        "attempt_id": w.attempt_id, "run_id": w.run_id, "owner": me, "held": held,
        "pool": w.pool, "pool_slots": w.pool_slots, "priority": w.priority,
        "run_date": to_utc(w.run_date), "grp": w.group, "grp_limit": w.group_limit,
        "owner_free": remaining, "filed_at": to_utc(at),
    }  # fmt: skip


def list_pools(conn: Connection, live: Liveness) -> list[PoolRecord]:
    """Every pool by name, with the slots its live claims hold and how many wait."""
    rows, _ = _rows(conn, live)
    running: dict[str, int] = {}
    waiting: dict[str, int] = {}
    for row in rows:
        into = running if row["held"] else waiting
        into[row["pool"]] = into.get(row["pool"], 0) + (row["pool_slots"] if row["held"] else 1)
    out = []
    for m in (r._mapping for r in conn.execute(select(pools).order_by(_p.name))):
        name = str(m["name"])
        used, wait = running.get(name, 0), waiting.get(name, 0)
        out.append(
            PoolRecord(name, int(m["slots"]), str(m["description"]), m["updated_at"], used, wait)
        )
    return out


def check_pool(name: object, slots: object) -> tuple[str, int]:
    """*name* and *slots* if they can make a pool.

    Raises:
        PoolError: a bad name, or slots that are not an int from -1 (no limit) to SLOTS_MAX.
    """
    try:
        checked = check_pool_name(name)
    except DefinitionError as err:
        raise PoolError(str(err)) from None
    if isinstance(slots, bool) or not isinstance(slots, int) or not -1 <= slots <= SLOTS_MAX:
        raise PoolError(
            f"pool {checked}: slots must be a whole number from 0 to {SLOTS_MAX}, or -1 for no "
            f"limit; got {slots!r}"
        )
    return checked, slots


def set_pool(
    conn: Connection, name: str, slots: int, description: str | None, at: datetime
) -> PoolRecord:
    """Create or resize pool *name* (checked by :func:`check_pool` first)."""
    found = conn.execute(select(pools).where(_p.name == name)).one_or_none()
    now = to_utc(at)
    if found is None:
        text = description if description is not None else ""
        conn.execute(
            insert(pools),
            {"name": name, "slots": slots, "description": text, "updated_at": now},
        )
        return PoolRecord(name, slots, text, now)
    values: dict[str, Any] = {"slots": slots, "updated_at": now}
    if description is not None:
        values["description"] = description
    conn.execute(update(pools).where(_p.name == name).values(**values))
    kept = str(found._mapping["description"]) if description is None else description
    return PoolRecord(name, slots, kept, now)


def delete_pool(conn: Connection, name: str, live: Liveness) -> None:
    """Delete pool *name* (see :meth:`rota.store.base.Store.delete_pool`).

    Raises:
        PoolError: ``default_pool``, no such pool, or live claims on it.
    """
    if name == DEFAULT_POOL:
        raise PoolError(f"{DEFAULT_POOL} cannot be deleted (resize it: rota pools set {name} N)")
    if conn.execute(select(_p.name).where(_p.name == name)).one_or_none() is None:
        raise PoolError(f"no pool named {name!r}")
    rows, _ = _rows(conn, live)
    held = sum(1 for r in rows if r["pool"] == name and r["held"])
    waiting = sum(1 for r in rows if r["pool"] == name and not r["held"])
    if held or waiting:
        raise PoolError(
            f"pool {name!r} is in use ({held} attempts hold its slots, {waiting} wait for them); "
            f"resize it instead (rota pools set {name} N)"
        )
    conn.execute(delete(pools).where(_p.name == name))


__all__ = [
    "HOLDING",
    "check_pool",
    "claim",
    "delete_pool",
    "list_pools",
    "release_ended",
    "set_pool",
]
