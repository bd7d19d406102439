"""A flow of 50 short tasks (10 chains of 5) that keep an effect ledger outside the store (run by
``rota`` in subprocesses, copied into a test's flow folder; never imported by pytest).

Every task, when it really runs, first takes an exclusive ``flock`` on a lock file of its own
(run, task) without waiting: the kernel releases it when the process ends, however it ends, so a
lock found held means another attempt of the same task is running at this very moment, and the
task writes an ``overlap`` line. It then appends ``start``, sleeps a little, appends ``end`` and
lets the lock go. Lines are ``event TAB run TAB task TAB try TAB pid TAB time``, appended with
O_APPEND (one write each, so lines never mix).
"""

import fcntl
import os
import time
from pathlib import Path

from rota import flow, task


def _ledger():
    return Path(os.environ["ROTA_TEST_LEDGER"])  # read when a task runs, not when parsed


def _line(event, ctx):
    text = f"{event}\t{ctx.run_id}\t{ctx.task_id}\t{ctx.try_number}\t{os.getpid()}\t{time.time()}\n"
    fd = os.open(_ledger(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


@task
def step(ctx):
    lock = _ledger().parent / "locks" / f"{ctx.run_id}.{ctx.task_id}"
    lock.parent.mkdir(exist_ok=True)
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _line("overlap", ctx)
            fcntl.flock(fd, fcntl.LOCK_EX)
        _line("start", ctx)
        time.sleep(0.02)
        _line("end", ctx)
    finally:
        os.close(fd)


@flow
def ledger():
    for chain in range(10):
        prev = None
        for i in range(5):
            node = step(task_id=f"c{chain}_{i}")
            if prev is not None:
                prev >> node
            prev = node
