"""Calling flow and task callbacks off the runner's loop; a callback's error is only logged."""

from __future__ import annotations

import contextlib
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rota.home import open_private
from rota.model.callbacks import Callback, CallbackContext
from rota.model.safetext import safe_text


class CallbackRunner:
    """Runs callbacks in a few threads; :meth:`close` waits for those still running.

    What a failing callback leaves in the log (and on stderr) goes through *redact* first, which
    masks the run's secrets.
    """

    def __init__(
        self,
        log_path: Path | None = None,
        *,
        threads: int = 4,
        redact: Callable[[str], str] = str,
    ) -> None:
        self._log_path = log_path
        self._redact = redact
        self._pool: ThreadPoolExecutor | None = None
        self._threads = threads
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()

    def fire(self, callbacks: tuple[Callback, ...], ctx: CallbackContext) -> None:
        """Call each of *callbacks* with *ctx*, in the background."""
        for cb in callbacks:
            self._submit(self._call, cb, ctx)

    def fire_with(
        self, callbacks: tuple[Callback, ...], context: Callable[[], CallbackContext]
    ) -> None:
        """Call each of *callbacks*, in turn, with the context *context* makes, in the background
        (the context is made there, once: it may read the store)."""
        if callbacks:
            self._submit(self._call_all, callbacks, context)

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="rota-callback")
        self._futures.append(self._pool.submit(fn, *args))

    def _call_all(
        self, callbacks: tuple[Callback, ...], context: Callable[[], CallbackContext]
    ) -> None:
        ctx = context()
        for cb in callbacks:
            self._call(cb, ctx)

    def _call(self, cb: Callback, ctx: CallbackContext) -> None:
        try:
            cb(ctx)
        except Exception:
            name = getattr(cb, "__qualname__", None) or type(cb).__name__
            where = f"task {ctx.task_id}" if ctx.task_id else f"run {ctx.run_id}"
            text = f"callback {name} for {ctx.event} of {where} failed:\n{traceback.format_exc()}"
            self._log(text)

    def _log(self, text: str) -> None:
        text = self._redact(text)
        first = safe_text(text.splitlines()[0])
        print(f"rota: {first} (see the callbacks log)", file=sys.stderr)
        if self._log_path is None:
            return
        with self._lock:
            fd = open_private(self._log_path, append=True)
            with open(fd, "a", encoding="utf-8") as fh:
                fh.write(text + "\n")

    def close(self, timeout: float = 30.0) -> None:
        """Wait (at most *timeout* seconds each) for callbacks still running."""
        for fut in self._futures:
            # errors were logged already; a callback still hanging after *timeout* is left behind
            with contextlib.suppress(Exception):
                fut.result(timeout=timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
