"""A 200-task flow for the crash tests (run by ``rota`` in a subprocess, never imported by pytest).

Shape: one source; four chains of 20 steps passing a number along; a fan-out of 100 leaves that
read the source's output, gathered by four fan-ins of 25; a join of the chain tails and the
gathers; then a tail of 14 side-effect-only tasks (no output) in a row.

Every task, when it really runs, appends ``task_id TAB time TAB pid TAB run_id TAB try`` to the
effect ledger (``$ROTA_TEST_LEDGER``, outside the store) with O_APPEND and fsync, then sleeps
0-10 ms so that kills land in the middle of the run.
"""

import os
import random
import time

from rota import flow, task

LEDGER = os.environ["ROTA_TEST_LEDGER"]


def _effect(ctx):
    line = f"{ctx.task_id}\t{time.time():.6f}\t{os.getpid()}\t{ctx.run_id}\t{ctx.try_number}\n"
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    time.sleep(random.random() * 0.01)


@task
def source(ctx):
    _effect(ctx)
    return 1


@task
def step(x, ctx):
    _effect(ctx)
    return x + 1


@task
def leaf(base, i, ctx):
    _effect(ctx)
    return base * i


@task
def gather(values, ctx):
    _effect(ctx)
    return sum(values)


@task
def join(tails, sums, ctx):
    _effect(ctx)
    return {"tails": sum(tails), "sums": sum(sums)}


@task
def tail(ctx):
    _effect(ctx)


@flow
def crashy():
    base = source(task_id="source")
    tails = []
    for k in range(4):
        x = base
        for i in range(20):
            x = step(x, task_id=f"chain{k}_{i:02d}")
        tails.append(x)
    leaves = [leaf(base, i, task_id=f"leaf{i:03d}") for i in range(100)]
    sums = [gather(leaves[g * 25 : (g + 1) * 25], task_id=f"gather{g}") for g in range(4)]
    prev = join(tails, sums, task_id="join")
    for i in range(14):
        nxt = tail(task_id=f"tail{i:02d}")
        prev >> nxt
        prev = nxt
