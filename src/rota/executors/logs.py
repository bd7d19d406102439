"""Capturing what an attempt prints into its own log, as it prints it (see ``logsink``).

Process workers point the file descriptors 1 and 2 at the attempt's :class:`LogSink` pipe, so C
extensions and child processes are captured too (:class:`FdCapture`). Thread workers route
``sys.stdout``/``sys.stderr`` per thread to the attempt's sink; a child process asks for
``fileno()`` and gets the sink's pipe (:class:`ThreadCapture`). Either way the log is written
while the attempt runs, with its secrets masked, and kept whatever ends it.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from rota.executors.logsink import LogSink, WorkerPump
from rota.model.secrets import Masker


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


class FdCapture:
    """Per-attempt capture of fds 1 and 2 in a worker process (one attempt at a time)."""

    def __init__(self) -> None:
        self._devnull = os.open(os.devnull, os.O_WRONLY)
        self._sink: LogSink | None = None
        self._appended = False
        self._pump = WorkerPump()  # its thread starts with the first attempt

    def begin(self, log_path: str, masker: Masker, *, append: bool = False) -> None:
        """Send fds 1 and 2 to the log at *log_path* (added to its end with *append*: a
        sensor's later pokes), masking *masker*'s secrets.

        Raises:
            OSError: the log or its pipe cannot be made (fds 1 and 2 are left as they were).
        """
        _flush_std()
        sink = LogSink(Path(log_path), masker, append=append)
        try:
            fd = self._pump.attach(sink)
        except BaseException:
            sink.close()
            raise
        self._sink, self._appended = sink, append
        os.dup2(fd, 1)
        os.dup2(fd, 2)

    def end(self) -> str | None:
        """Stop capturing; return the log's path, or None when nothing was printed.

        Raises:
            OSError: a write to the log failed.
        """
        _flush_std()
        os.dup2(self._devnull, 1)
        os.dup2(self._devnull, 2)
        self._pump.detach()
        sink, self._sink = self._sink, None
        return sink.finish(appended=self._appended) if sink is not None else None

    def abandon(self, timeout: float = 1.0) -> None:
        """The worker is about to die (killed for its timeout, or its engine gone): write what
        the attempt printed so far, as far as that takes no more than about *timeout* seconds."""
        sink = self._sink
        if sink is None:
            return
        with contextlib.suppress(Exception):
            _flush_std()
        with contextlib.suppress(Exception):
            self._pump.detach(timeout)
        with contextlib.suppress(Exception):
            sink.close(timeout=timeout)


class _Router(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: writes go to the current thread's attempt log."""

    def __init__(self, capture: ThreadCapture, fallback: TextIO) -> None:
        self._capture = capture
        self._fallback = fallback

    @property
    def capture(self) -> ThreadCapture:
        return self._capture

    @property
    def fallback(self) -> TextIO:
        return self._fallback

    def write(self, s: str) -> int:
        sink = self._capture.current()
        if sink is None:
            return self._fallback.write(s)
        sink.put(s.encode("utf-8", errors="replace"))
        return len(s)

    def flush(self) -> None:
        if self._capture.current() is None:
            self._fallback.flush()

    def fileno(self) -> int:
        sink = self._capture.current()
        if sink is None:
            return self._fallback.fileno()
        return sink.pipe()

    def isatty(self) -> bool:
        return False


def _routes_for(stream: object, capture: ThreadCapture) -> bool:
    """Whether *capture*'s router is *stream* or one that *stream* falls back to."""
    while isinstance(stream, _Router):
        if stream.capture is capture:
            return True
        stream = stream.fallback
    return False


class ThreadCapture:
    """Per-thread capture of sys.stdout/sys.stderr for the thread and in-process executors."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._saved: tuple[Any, Any] | None = None

    def install(self) -> None:
        """Put the routers in place of sys.stdout and sys.stderr (again, if they were replaced)."""
        with self._lock:
            if self._saved is None:
                self._saved = (sys.stdout, sys.stderr)
            # Another capture's router may be in place (a thread executor beside the engine's
            # sensor threads): put ours in front of it, so each routes its own threads.
            if not _routes_for(sys.stdout, self):
                sys.stdout = _Router(self, sys.stdout)
            if not _routes_for(sys.stderr, self):
                sys.stderr = _Router(self, sys.stderr)

    def uninstall(self) -> None:
        """Restore sys.stdout and sys.stderr."""
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None

    def current(self) -> LogSink | None:
        sink: LogSink | None = getattr(self._local, "sink", None)
        return sink

    def begin(self, log_path: str, masker: Masker, *, append: bool = False) -> None:
        """Start writing this thread's output to the log at *log_path* (added to its end with
        *append*), masking *masker*'s secrets.

        Raises:
            OSError: the log cannot be made.
        """
        self.install()
        self._local.sink = LogSink(Path(log_path), masker, append=append)
        self._local.appended = append

    def end(self) -> str | None:
        """Stop capturing; return the log's path, or None when nothing was printed.

        Raises:
            OSError: a write to the log failed.
        """
        sink = self.current()
        self._local.sink = None
        if sink is None:
            return None
        return sink.finish(appended=bool(getattr(self._local, "appended", False)))
