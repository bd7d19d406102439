"""Capturing what an attempt prints into one log file per attempt.

Process workers redirect the file descriptors 1 and 2 (so C extensions and child processes are
captured too) into a scratch file that becomes the attempt's log only if something was written.
Thread workers route ``sys.stdout``/``sys.stderr`` per thread into a buffer that is written out only
if non-empty; a child process asks for ``fileno()`` and gets the real log file.

Log and scratch names are predictable, so every file here is opened through :mod:`rota.home`: the
scratch file is created exclusively (whatever sits at its name is removed, never followed), a log
is opened without following a symbolic link, and both are 0600 in 0700 folders.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from pathlib import Path
from typing import IO, Any

from rota.home import create_exclusive, open_private, private_dir


class FdCapture:
    """Per-attempt capture of fds 1 and 2 in a worker process (one attempt at a time)."""

    def __init__(self, scratch_dir: Path) -> None:
        self._dir = scratch_dir
        self._devnull = os.open(os.devnull, os.O_WRONLY)
        self._fd: int | None = None
        self._path = scratch_dir / scratch_name(os.getpid())

    def begin(self) -> None:
        """Send fds 1 and 2 to the scratch file, a new one made for this worker alone."""
        _flush_std()
        if self._fd is None:
            private_dir(self._dir)
            self._fd = create_exclusive(self._path)
        os.dup2(self._fd, 1)
        os.dup2(self._fd, 2)

    def end(self, log_path: str, *, append: bool = False) -> str | None:
        """Stop capturing; keep the output as *log_path* if there was any (added to its end with
        *append*: a sensor's later pokes), and return that path."""
        _flush_std()
        os.dup2(self._devnull, 1)
        os.dup2(self._devnull, 2)
        assert self._fd is not None
        try:
            return self._keep(log_path, append=append)
        except BaseException:
            _empty(self._fd)  # the next attempt's log must not start with this one's output
            raise

    def _keep(self, log_path: str, *, append: bool) -> str | None:
        assert self._fd is not None
        if os.fstat(self._fd).st_size == 0:
            return log_path if append and Path(log_path).exists() else None
        target = Path(log_path)
        private_dir(target.parent)
        if append and target.exists():
            os.lseek(self._fd, 0, os.SEEK_SET)
            with os.fdopen(open_private(target, append=True), "ab") as out:
                while chunk := os.read(self._fd, 1 << 20):
                    out.write(chunk)
            _empty(self._fd)
            return log_path
        os.replace(self._path, target)  # renaming over a symbolic link replaces it: never followed
        os.close(self._fd)
        self._fd = None
        return log_path


def _empty(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)


def scratch_name(pid: int) -> str:
    """The name of the scratch file of the worker process *pid*, in the logs folder."""
    return f".scratch-{pid}.log"


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


class _Buffer:
    """One attempt's output in a thread: text in memory until a child process needs a real fd."""

    def __init__(self, log_path: str) -> None:
        self.log_path = log_path
        self.text = io.StringIO()
        self.file: IO[str] | None = None

    def real_file(self) -> IO[str]:
        if self.file is None:
            fd = open_private(Path(self.log_path))
            self.file = open(fd, "w", encoding="utf-8", errors="replace")  # noqa: SIM115
            self.file.write(self.text.getvalue())
            self.file.flush()
            self.text = io.StringIO()
        return self.file


class _Router(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: writes go to the current thread's attempt buffer."""

    def __init__(self, capture: ThreadCapture, fallback: IO[str]) -> None:
        self._capture = capture
        self._fallback = fallback

    @property
    def capture(self) -> ThreadCapture:
        return self._capture

    @property
    def fallback(self) -> IO[str]:
        return self._fallback

    def write(self, s: str) -> int:
        buf = self._capture.current()
        if buf is None:
            return self._fallback.write(s)
        if buf.file is not None:
            return buf.file.write(s)
        return buf.text.write(s)

    def flush(self) -> None:
        buf = self._capture.current()
        if buf is None:
            self._fallback.flush()
        elif buf.file is not None:
            buf.file.flush()

    def fileno(self) -> int:
        buf = self._capture.current()
        if buf is None:
            return self._fallback.fileno()
        return buf.real_file().fileno()

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

    def current(self) -> _Buffer | None:
        return getattr(self._local, "buffer", None)

    def begin(self, log_path: str) -> None:
        """Start capturing this thread's output for the attempt whose log is *log_path*."""
        self.install()
        self._local.buffer = _Buffer(log_path)

    def end(self, log_path: str, *, append: bool = False) -> str | None:
        """Stop capturing; write the log if anything was printed (added to its end with
        *append*) and return its path."""
        buf: _Buffer | None = getattr(self._local, "buffer", None)
        self._local.buffer = None
        if buf is None:
            return None
        if buf.file is not None:
            buf.file.close()
            return log_path
        text = buf.text.getvalue()
        if not text:
            return log_path if append and Path(log_path).exists() else None
        fd = open_private(Path(log_path), append=append)
        with open(fd, "w", encoding="utf-8", errors="replace") as fh:
            fh.write(text)
        return log_path
