"""SQL for pools and slot claims: one allocation pass per transaction, pools made and listed.

A claim row is filed for an attempt that waits for slots; granted, it is a slot its run holds,
hands on to its next attempts, and gives back (:func:`release`). It counts while its owner holds
its run's lease: a runner that lost or gave up its lease, or is known to be dead, holds nothing.
A pass (:func:`claim`) runs under a lock that serializes passes: PostgreSQL's transaction
advisory lock, SQLite's write lock (``BEGIN IMMEDIATE``). Under it the pass reads every claim,
drops those that are not alive, and lets :func:`rota.model.allocation.allocate` decide, so two
runners never grant one slot twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, RowMapping, bindparam, delete, func, insert, select, update

from rota.errors import DefinitionError, PoolError
from rota.model.allocation import Claim, allocate
from rota.model.pools import DEFAULT_POOL, SLOTS_MAX, check_pool_name
from rota.store.base import Liveness, PoolRecord, SlotPass, SlotRequest
from rota.store.tables import pools, runs, slot_claims
from rota.store.writes import to_utc

_c = slot_claims.c
_p = pools.c
_SLOT_LOCK: Final = 0x526F7450  # PostgreSQL advisory lock key of allocation passes ("RotP")
_BY_SEQ: Final = delete(slot_claims).where(_c.seq == bindparam("b_seq"))


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_SLOT_LOCK)))


def _claim_of(row: RowMapping) -> Claim:
    return Claim(
        row["attempt_id"], row["run_id"], row["pool"], row["pool_slots"], row["priority"],
        row["run_date"], row["seq"], bool(row["held"]), row["grp"], row["grp_limit"],
        row["run_free"],
    )  # fmt: skip


def _rows(conn: Connection, live: Liveness, run_id: str) -> tuple[list[RowMapping], list[int]]:
    """Every claim row; the live ones, and the seqs of the others.

    Rows of *run_id* filed by ``live.me`` are alive; any other row is alive while its owner holds
    its run's lease (fresh by ``live.stale_before``) and is not known to be dead.
    """
    query = select(slot_claims, runs.c.owner.label("run_owner"), runs.c.heartbeat_at).select_from(
        slot_claims.outerjoin(runs, runs.c.run_id == _c.run_id)
    )
    dead: dict[str, bool] = {}
    alive: list[RowMapping] = []
    gone: list[int] = []
    for row in conn.execute(query.order_by(_c.seq)):
        m = row._mapping
        owner = m["owner"]
        if not (owner == live.me and m["run_id"] == run_id):
            beat = m["heartbeat_at"]
            leased = m["run_owner"] == owner and beat is not None and beat >= live.stale_before
            if owner not in dead:
                dead[owner] = live.is_dead(owner)
            if not leased or dead[owner]:
                gone.append(m["seq"])
                continue
        alive.append(m)
    return alive, gone


def _sizes(conn: Connection) -> dict[str, int]:
    return {str(name): int(slots) for name, slots in conn.execute(select(_p.name, _p.slots))}


def claim(
    conn: Connection,
    run_id: str,
    wanted: Sequence[SlotRequest],
    release: Sequence[int],
    free: int,
    live: Liveness,
    at: datetime,
) -> SlotPass:
    """One allocation pass for *run_id* (see :meth:`rota.store.base.Store.claim_slots`)."""
    _lock(conn)
    me = live.me
    mine_where = (_c.owner == me, _c.run_id == run_id)
    if release:
        conn.execute(delete(slot_claims).where(*mine_where, _c.seq.in_(release)))
    rows, drop = _rows(conn, live, run_id)
    wanted_ids = {w.attempt_id for w in wanted}
    filed: dict[int, RowMapping] = {}  # our waiting claims, by attempt
    claims: list[Claim] = []
    for row in rows:
        ours = row["owner"] == me and row["run_id"] == run_id
        if ours and not row["held"]:
            if row["attempt_id"] not in wanted_ids:
                drop.append(row["seq"])  # no longer among our most urgent ready tasks
                continue
            filed[row["attempt_id"]] = row
        claims.append(_claim_of(row))
    top = max((r["seq"] for r in rows), default=0)
    new = [w for w in wanted if w.attempt_id not in filed]
    claims.extend(_filed(w, top + 1 + i) for i, w in enumerate(new))
    alloc = allocate(claims, _sizes(conn), me=run_id, free=free)
    drop.extend(filed[a]["seq"] for a in alloc.refused if a in filed)
    remaining = max(0, free - len(alloc.granted))
    granted = _write(conn, me, drop, new, filed, alloc.granted, alloc.refused, remaining, at)
    return SlotPass(granted, alloc.refused, alloc.contention)


def _filed(w: SlotRequest, seq: int) -> Claim:
    return Claim(
        w.attempt_id, w.run_id, w.pool, w.pool_slots, w.priority, w.run_date, seq,
        group=w.group, group_limit=w.group_limit,
    )  # fmt: skip


def _write(
    conn: Connection,
    me: str,
    drop: Iterable[int],
    new: Sequence[SlotRequest],
    filed: dict[int, RowMapping],
    granted: Sequence[int],
    refused: dict[int, str],
    remaining: int,
    at: datetime,
) -> dict[int, int]:
    """Store a pass's outcome; return the granted attempts' claims (attempt id -> seq)."""
    gone = [{"b_seq": seq} for seq in drop]
    if gone:
        conn.execute(_BY_SEQ, gone)
    chosen = set(granted)
    out = {a: filed[a]["seq"] for a in granted if a in filed}
    if out:
        conn.execute(
            update(slot_claims).where(_c.seq.in_(out.values())).values(held=True, run_free=0)
        )
    rows = [_new_row(w, me, w.attempt_id in chosen, remaining, at) for w in new]
    rows = [r for r in rows if r["attempt_id"] not in refused]
    for row in rows:  # one by one: each returns its seq (few: at most a window's worth)
        seq = conn.execute(insert(slot_claims).returning(_c.seq), row).scalar_one()
        if row["held"]:
            out[row["attempt_id"]] = int(seq)
    waiting = [f["seq"] for a, f in filed.items() if a not in chosen and f["run_free"] != remaining]
    if waiting:
        conn.execute(update(slot_claims).where(_c.seq.in_(waiting)).values(run_free=remaining))
    return out


def _new_row(w: SlotRequest, me: str, held: bool, remaining: int, at: datetime) -> dict[str, Any]:
    return {
        "attempt_id": w.attempt_id, "run_id": w.run_id, "owner": me, "held": held,
        "pool": w.pool, "pool_slots": w.pool_slots, "priority": w.priority,
        "run_date": to_utc(w.run_date), "grp": w.group, "grp_limit": w.group_limit,
        "run_free": 0 if held else remaining, "filed_at": to_utc(at),
    }  # fmt: skip


def release(conn: Connection, owner: str, run_id: str, seqs: Sequence[int] | None) -> None:
    """Give back claims of *run_id* filed by *owner*: those numbered *seqs*, or all (None)."""
    stmt = delete(slot_claims).where(_c.owner == owner, _c.run_id == run_id)
    if seqs is not None:
        if not seqs:
            return
        stmt = stmt.where(_c.seq.in_(seqs))
    conn.execute(stmt)


def list_pools(conn: Connection, live: Liveness) -> list[PoolRecord]:
    """Every pool by name, with the slots its live claims hold and how many wait."""
    rows, _ = _rows(conn, live, "")
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
    rows, _ = _rows(conn, live, "")
    held = sum(1 for r in rows if r["pool"] == name and r["held"])
    waiting = sum(1 for r in rows if r["pool"] == name and not r["held"])
    if held or waiting:
        raise PoolError(
            f"pool {name!r} is in use ({held} attempts hold its slots, {waiting} wait for them); "
            f"resize it instead (rota pools set {name} N)"
        )
    conn.execute(delete(pools).where(_p.name == name))


__all__ = ["check_pool", "claim", "delete_pool", "list_pools", "release", "set_pool"]
